package main

import (
	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/config"
)

// checkTools fails, before anything is started, when the configured mode needs a program
// or kernel module that this node lacks: the error says what to install and which modes
// would work here. portico exits 1 on it instead of retrying behind a green start.
// Programs are looked up on the PATH, kernel modules under hostRoot.
func checkTools(cfg *config.Config) error {
	probe := backends.ToolProbe{Root: hostRoot}
	return probe.Check(cfg.Mode, config.Modes, registry().Available())
}
