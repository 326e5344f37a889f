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
	fmt.Fprintf(b, "table %s node=%s localTraffic=%s\n", t.family, n.Name, n.LocalTraffic.text())
	fmt.Fprintf(b, "  node addresses: %s\n", joinText(n.Addrs))
	fmt.Fprintf(b, "  service CIDRs: %s\n", joinText(n.ServiceCIDRs))
	for sp := range t.All() {
		sp.writeText(b)
	}
}

// joinText renders a list of values separated by spaces, or "none".
func joinText[T fmt.Stringer](vs []T) string {
	if len(vs) == 0 {
		return "none"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, " ")
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
	for _, c := range Classes {
		if t := sp.Traffic(c); t.Exists() {
			fmt.Fprintf(b, "    %-19s %s -> %s\n", c.String()+":", t, sp.Verdict(c))
		}
	}
	writeEndpoints(b, "cluster", sp.Cluster)
	writeEndpoints(b, "local", sp.Local)
	if len(sp.Hairpin) > 0 {
		fmt.Fprintf(b, "    hairpin: %s\n", joinText(sp.Hairpin))
	}
	if sp.Affinity.Enabled() {
		fmt.Fprintf(b, "    affinity: ClientIP timeout=%s\n", sp.Affinity.Timeout)
	}
	for _, p := range sp.SourceRanges {
		fmt.Fprintf(b, "    sourceRange %s\n", p)
	}
	if sp.HealthCheckNodePort != 0 {
		fmt.Fprintf(b, "    healthCheckNodePort %d\n", sp.HealthCheckNodePort)
	}
	if sp.Scheduler != "" {
		fmt.Fprintf(b, "    ipvs scheduler %s\n", sp.Scheduler)
	}
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
