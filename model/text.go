package model

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes a stable, human-readable rendering of the state: the golden format of
// the compile tests and the model section of `portico dump`.
func (s *State) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, t := range s.Tables {
		t.writeText(&b)
	}
	for _, en := range s.ExternalNames {
		fmt.Fprintf(&b, "externalName %s -> %s\n", en.Service, en.Target)
		for _, p := range en.Ports {
			fmt.Fprintf(&b, "  port %q %d/%s\n", p.Name, p.Port, p.Protocol)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (t *Table) writeText(b *strings.Builder) {
	n := t.node
	fmt.Fprintf(b, "table %s node=%s masqueradeAll=%t localTraffic=%s\n",
		t.family, n.Name, n.MasqueradeAll, n.LocalTraffic.text())
	for sp := range t.All() {
		sp.writeText(b)
	}
}

func (l LocalTraffic) text() string {
	switch {
	case len(l.CIDRs) > 0:
		parts := make([]string, len(l.CIDRs))
		for i, p := range l.CIDRs {
			parts[i] = p.String()
		}
		return "cidrs:" + strings.Join(parts, ",")
	case l.BridgeInterface != "":
		return "bridge:" + l.BridgeInterface
	case l.InterfacePrefix != "":
		return "interfacePrefix:" + l.InterfacePrefix
	}
	return "none"
}

func (sp *ServicePort) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "  servicePort %s\n", sp.Name)
	for _, f := range sp.Frontends {
		fmt.Fprintf(b, "    frontend %s\n", f)
	}
	fmt.Fprintf(b, "    internal: policy=%s verdict=%s\n", policyName(sp.InternalLocal), sp.InternalVerdict())
	if sp.HasExternal() {
		fmt.Fprintf(b, "    external: policy=%s verdict=%s\n", policyName(sp.ExternalLocal), sp.ExternalVerdict())
	}
	writeEndpoints(b, "cluster", sp.Cluster)
	writeEndpoints(b, "local", sp.Local)
	fmt.Fprintf(b, "    hasAnyEndpoints=%t\n", sp.HasAnyEndpoints)
	if sp.Affinity.Enabled() {
		fmt.Fprintf(b, "    affinity: ClientIP timeout=%s\n", sp.Affinity.Timeout)
	}
	for _, p := range sp.SourceRanges {
		fmt.Fprintf(b, "    sourceRange %s\n", p)
	}
	if sp.HealthCheckNodePort != 0 {
		fmt.Fprintf(b, "    healthCheckNodePort %d\n", sp.HealthCheckNodePort)
	}
}

func policyName(local bool) string {
	if local {
		return "Local"
	}
	return "Cluster"
}

func writeEndpoints(b *strings.Builder, label string, eps []Endpoint) {
	if eps == nil {
		fmt.Fprintf(b, "    %s endpoints: unused\n", label)
		return
	}
	fmt.Fprintf(b, "    %s endpoints: %d\n", label, len(eps))
	for _, e := range eps {
		fmt.Fprintf(b, "      %s%s\n", e, e.flags())
	}
}

func (e Endpoint) flags() string {
	var f []string
	if e.Local {
		f = append(f, "local")
	}
	if e.Ready {
		f = append(f, "ready")
	}
	if e.Serving {
		f = append(f, "serving")
	}
	if e.Terminating {
		f = append(f, "terminating")
	}
	if len(f) == 0 {
		return ""
	}
	return " (" + strings.Join(f, ",") + ")"
}
