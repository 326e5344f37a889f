package ipvs

import (
	"github.com/moby/ipvs"
)

// Handle is the part of github.com/moby/ipvs's *ipvs.Handle that the backend uses, so
// that unit tests can run it over ipvstest's in-memory fake.
type Handle interface {
	GetServices() ([]*ipvs.Service, error)
	NewService(s *ipvs.Service) error
	UpdateService(s *ipvs.Service) error
	DelService(s *ipvs.Service) error
	GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error)
	NewDestination(s *ipvs.Service, d *ipvs.Destination) error
	UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error
	DelDestination(s *ipvs.Service, d *ipvs.Destination) error
	GetConfig() (*ipvs.Config, error)
	SetConfig(c *ipvs.Config) error
}

// The kernel's flags of a virtual server (include/uapi/linux/ip_vs.h).
const (
	// flagPersistent makes a client stick to its real server (session affinity).
	flagPersistent = 0x0001
	// flagHashed is set by the kernel on every listed virtual server.
	flagHashed = 0x0002
)

var _ Handle = (*ipvs.Handle)(nil)
