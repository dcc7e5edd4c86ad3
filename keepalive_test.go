package mp_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strings"
	"testing"
)

// noWait lists the exported methods of the shared objects that need not
// keep their object alive (see the doc of object, in handle.go): they do
// not wait, or only call a method of the same object that does.
var noWait = []string{
	"Array.CompareAndSwap", "Array.Add", "Array.Len", "Array.Load", "Array.Slice", "Array.Store", "Array.Unlock",
	"Array.UnmarshalCBOR",
	"Barrier.Broken", "Barrier.Parties", "Barrier.UnmarshalCBOR", "Barrier.Waiting",
	"Condition.NotifyAll", // Notify does
	"Condition.Unlock", "Condition.UnmarshalCBOR",
	"Conn.Close", "Conn.MarshalCBOR", "Conn.UnmarshalCBOR",
	"Event.Clear", "Event.IsSet", "Event.Set", "Event.UnmarshalCBOR",
	"Lock.TryLock", "Lock.Unlock", "Lock.UnmarshalCBOR",
	"Queue.All", // its Get does
	"Queue.Len", "Queue.TaskDone", "Queue.UnmarshalCBOR",
	"RLock.TryLock", "RLock.Unlock", "RLock.UnmarshalCBOR",
	"Semaphore.UnmarshalCBOR", "Semaphore.Value",
	"Value.Add", "Value.CompareAndSwap", "Value.Load", "Value.Store", "Value.Unlock", "Value.UnmarshalCBOR",
}

// Every exported method of a type that embeds object keeps its receiver
// alive (defer runtime.KeepAlive) while it runs, or is listed in noWait:
// a method added to a shared object is a choice between the two.
func TestKeepAliveEveryMethod(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	var files []*ast.File
	names, _ := os.ReadDir(".")
	for _, n := range names {
		if !strings.HasSuffix(n.Name(), ".go") || strings.HasSuffix(n.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n.Name(), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	shared := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			if st, ok := ts.Type.(*ast.StructType); ok {
				for _, fld := range st.Fields.List {
					if id, ok := fld.Type.(*ast.Ident); ok && len(fld.Names) == 0 && id.Name == "object" {
						shared[ts.Name.Name] = true
					}
				}
			}
			return false
		})
	}
	if len(shared) < 10 {
		t.Fatalf("found %d shared object types, want the 10 or more of the package", len(shared))
	}
	seen := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv == nil || !fd.Name.IsExported() || len(fd.Recv.List[0].Names) == 0 {
				continue
			}
			typ := recvType(fd.Recv.List[0].Type)
			if !shared[typ] {
				continue
			}
			name := typ + "." + fd.Name.Name
			seen[name] = true
			kept := keepsAlive(fd.Body, fd.Recv.List[0].Names[0].Name)
			switch listed := slices.Contains(noWait, name); {
			case !kept && !listed:
				t.Errorf("%s: %s does not begin with defer runtime.KeepAlive on its receiver (see object), and is not listed in noWait", fset.Position(fd.Pos()), name)
			case kept && listed:
				t.Errorf("%s keeps its object alive, and is listed in noWait", name)
			}
		}
	}
	for _, name := range noWait {
		if !seen[name] {
			t.Errorf("noWait lists %s, which is not an exported method of a shared object", name)
		}
	}
}

// recvType is the name of a method's receiver's type.
func recvType(e ast.Expr) string {
	if s, ok := e.(*ast.StarExpr); ok {
		e = s.X
	}
	switch x := e.(type) {
	case *ast.IndexExpr:
		e = x.X
	case *ast.IndexListExpr:
		e = x.X
	}
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// keepsAlive reports whether body begins with defer runtime.KeepAlive(recv).
func keepsAlive(body *ast.BlockStmt, recv string) bool {
	if len(body.List) == 0 {
		return false
	}
	d, ok := body.List[0].(*ast.DeferStmt)
	if !ok || len(d.Call.Args) != 1 {
		return false
	}
	sel, ok := d.Call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "KeepAlive" {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	arg, ok2 := d.Call.Args[0].(*ast.Ident)
	return ok && ok2 && pkg.Name == "runtime" && arg.Name == recv
}
