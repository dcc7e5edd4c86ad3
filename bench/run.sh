#!/usr/bin/env bash
# run.sh runs the Go benchmarks of bench_test.go and their Python
# multiprocessing twins (py/bench.py) in turn, round after round, and prints
# the median, min and max of each and the ratio of the medians. See README.md.
set -euo pipefail

usage() {
	cat <<EOF
usage: bench/run.sh [-r ROUNDS] [-q] [BENCHMARK...]

Runs each BENCHMARK (default: all) ROUNDS times (default 5), the Go benchmark
then its Python twin each time, and prints a table of seconds per op.
-q runs each benchmark briefly (0.5s or one op), for a smoke test.
Benchmarks: ${all[*]}
A name ending in -nocgo runs that benchmark in a binary built with
CGO_ENABLED=0 (a faster process start), beside its Python twin.
Raw results go to bench/results/<date>-<time>/.
EOF
}

# The benchmarks, and how long each one runs per round: Ns is N seconds of
# ops, as many as fit (at least one); Nx is N ops. Keep a default run of all
# of them under ten minutes on two cores.
all=(Spawn Spawn-nocgo SpawnWarm PoolStart PoolStart-nocgo Map MapChunk1 Apply Floor ApplyAsync ImapUnordered
	SharedMemory BigArg Lock Value Semaphore RLock Queue QueueMany Pipe)
declare -A benchtime=(
	[Spawn]=2s [Spawn-nocgo]=2s [SpawnWarm]=40x [PoolStart]=2s [PoolStart-nocgo]=2s
	[Map]=5x [MapChunk1]=3x [Apply]=2s [Floor]=2s
	[ApplyAsync]=2x [ImapUnordered]=40x [SharedMemory]=1s [BigArg]=3x [Lock]=5x [Value]=5x [Semaphore]=5x [RLock]=5x
	[Queue]=3x [QueueMany]=3x [Pipe]=2s
)
# The Python twin of each benchmark, where it is not the benchmark's own
# name: SpawnWarm is compared with Spawn; Floor (a raw socketpair round trip
# between two Go processes, the machine's floor for Apply) has none.
declare -A pytwin=([SpawnWarm]=Spawn [Floor]= [Spawn-nocgo]=Spawn [PoolStart-nocgo]=PoolStart)

rounds=5
quick=false
while getopts "r:qh" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	q) quick=true ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
	echo "run.sh: -r wants a positive number of rounds, got $rounds" >&2
	exit 2
fi

if [[ $# -eq 0 ]]; then
	set -- "${all[@]}"
fi
selected=()
for arg; do
	name=${arg#Benchmark}
	if [[ -z $name || -z ${benchtime[$name]:-} ]]; then
		echo "run.sh: no benchmark $arg; have ${all[*]}" >&2
		exit 2
	fi
	selected+=("$name")
done

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
out=$bench/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
bin=$bench/results/bench.test
nocgo=$bench/results/bench-nocgo.test

echo "building the benchmark binaries"
(cd "$bench" && go test -c -o "$bin" .)
if [[ " ${selected[*]} " == *-nocgo* ]]; then
	(cd "$bench" && CGO_ENABLED=0 go test -c -o "$nocgo" .)
fi
{
	date -u +%FT%TZ
	git -C "$bench" rev-parse HEAD 2>/dev/null || true
	go version
	"$python" --version
	uname -srm
	echo "cpus: $(nproc)"
	echo "rounds: $rounds  quick: $quick  benchmarks: ${selected[*]}"
} >"$out/env.txt"

# times.tsv has one line per run: round, benchmark, implementation (go, or
# py/<start method>), seconds per op.
printf 'round\tbenchmark\timpl\tseconds\n' >"$out/times.tsv"

# fail reports a run that failed, with the end of its output, and goes on.
fail() {
	echo "  FAILED: $1 (exit $2); the end of its output:" >&2
	tail -n 20 "$3" | sed 's/^/    /' >&2
}

run_go() { # round name benchtime
	local log=$out/go.$2.$1.log rc=0 b=$bin name=$2
	if [[ $name == *-nocgo ]]; then
		b=$nocgo name=${name%-nocgo}
	fi
	timeout 300 "$b" -test.run '^$' -test.bench "^Benchmark$name\$" -test.count 1 \
		-test.benchtime "$3" -test.benchmem -test.timeout 280s >"$log" 2>&1 || rc=$?
	if [[ $b == "$nocgo" ]]; then
		sed "s/^Benchmark$name/Benchmark$name-nocgo/" "$log" >>"$out/go.txt"
	else
		cat "$log" >>"$out/go.txt"
	fi
	local sec
	sec=$(awk -v name="Benchmark$name" '
		$1 == name || index($1, name "-") == 1 {
			for (i = 2; i <= NF; i++) if ($i == "ns/op") { printf "%.9g", $(i-1) / 1e9; exit }
		}' "$log")
	if [[ $rc -ne 0 || -z $sec ]]; then
		fail "Go $2" "$rc" "$log"
		return
	fi
	printf '%s\t%s\tgo\t%s\n' "$1" "$2" "$sec" >>"$out/times.tsv"
	printf '  %-14s go        %s s/op\n' "$2" "$sec"
}

run_py() { # round name benchtime
	local twin=$2
	if [[ -v pytwin[$2] ]]; then
		twin=${pytwin[$2]}
		[[ -n $twin ]] || return 0
	fi
	local log=$out/py.$2.$1.log rc=0 arg=()
	case $3 in
	*s) arg=(--time "${3%s}") ;;
	*x) arg=(--reps "${3%x}") ;;
	esac
	timeout 300 "$python" "$bench/py/bench.py" "${arg[@]}" "$twin" >"$log" 2>&1 || rc=$?
	cat "$log" >>"$out/py.txt"
	if [[ $rc -ne 0 ]] || ! grep -q "^$twin[ /]" "$log"; then
		fail "Python $twin" "$rc" "$log"
		return
	fi
	local label sec method
	while read -r label sec; do
		[[ $label == "$twin" || $label == "$twin"/* ]] || continue
		method=fork
		[[ $label == */* ]] && method=${label#*/}
		printf '%s\t%s\tpy/%s\t%s\n' "$1" "$2" "$method" "$sec" >>"$out/times.tsv"
		printf '  %-14s py/%-6s %s s/op\n' "$2" "$method" "$sec"
	done <"$log"
}

for ((round = 1; round <= rounds; round++)); do
	echo "round $round of $rounds"
	for name in "${selected[@]}"; do
		bt=${benchtime[$name]}
		if $quick; then
			case $bt in *s) bt=0.5s ;; *x) bt=1x ;; esac
		fi
		run_go "$round" "$name" "$bt"
		run_py "$round" "$name" "$bt"
	done
done

echo
"$python" "$bench/py/table.py" "$out/times.tsv" | tee "$out/table.txt"
echo
echo "raw results: $out (go.txt is benchstat input)"
