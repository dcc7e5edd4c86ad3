package mp

// thisPlatform is what this system lets a pool do.
var thisPlatform = platform{name: "linux", rss: true}
