// Package deploy checks the Kubernetes manifests shipped with the vRouter example by
// decoding them with the Kubernetes API types (strictly: an unknown field is an error)
// and the vRouter's own config validation. It is a separate module so the library's
// go.mod does not carry the Kubernetes API.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
)

// docs splits a multi-document YAML file into documents.
func docs(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yamlv3.NewDecoder(bytes.NewReader(b))
	var out [][]byte
	for {
		var n yamlv3.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("%s: %v", path, err)
		}
		doc, err := yamlv3.Marshal(&n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, doc)
	}
}

// strict decodes YAML into obj, refusing unknown fields, as kubectl --validate=strict.
func strict(t *testing.T, doc []byte, obj any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("decode %T: %v\n%s", obj, err, doc)
	}
}

func kind(t *testing.T, doc []byte) string {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatal(err)
	}
	return tm.Kind
}

func TestDaemonSet(t *testing.T) {
	var sawDS, sawCM bool
	for _, doc := range docs(t, "daemonset.yaml") {
		switch kind(t, doc) {
		case "ConfigMap":
			var cm corev1.ConfigMap
			strict(t, doc, &cm)
			if _, err := config.Parse([]byte(cm.Data["vrouter.yaml"])); err != nil {
				t.Fatalf("ConfigMap vrouter.yaml: %v", err)
			}
			sawCM = true
		case "DaemonSet":
			var ds appsv1.DaemonSet
			strict(t, doc, &ds)
			c := ds.Spec.Template.Spec.Containers
			if len(c) != 1 || !ds.Spec.Template.Spec.HostNetwork {
				t.Fatalf("unexpected pod spec: %+v", ds.Spec.Template.Spec)
			}
			if _, ok := c[0].Resources.Limits["hugepages-2Mi"]; !ok {
				t.Fatal("no hugepage limit")
			}
			if ds.Spec.Selector.MatchLabels["app"] != ds.Spec.Template.Labels["app"] {
				t.Fatal("selector does not match the template")
			}
			sawDS = true
		default:
			t.Fatalf("unexpected kind %q", kind(t, doc))
		}
	}
	if !sawDS || !sawCM {
		t.Fatal("DaemonSet or ConfigMap missing")
	}
}

// NetworkAttachmentDefinition is the Multus CRD's shape (k8s.cni.cncf.io/v1).
type NetworkAttachmentDefinition struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Config string `json:"config"`
	} `json:"spec"`
}

func TestNetworkAttachment(t *testing.T) {
	var sawNAD, sawPod bool
	for _, doc := range docs(t, "network-attachment.yaml") {
		switch kind(t, doc) {
		case "NetworkAttachmentDefinition":
			var nad NetworkAttachmentDefinition
			strict(t, doc, &nad)
			if nad.APIVersion != "k8s.cni.cncf.io/v1" {
				t.Fatalf("apiVersion %q", nad.APIVersion)
			}
			var cni struct {
				CNIVersion string          `json:"cniVersion"`
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				IPAM       json.RawMessage `json:"ipam"`
			}
			if err := json.Unmarshal([]byte(nad.Spec.Config), &cni); err != nil {
				t.Fatalf("CNI config is not JSON: %v", err)
			}
			if cni.CNIVersion == "" || cni.Name != nad.Name || cni.Type == "" || len(cni.IPAM) == 0 {
				t.Fatalf("CNI config incomplete: %+v", cni)
			}
			sawNAD = true
		case "Pod":
			var pod corev1.Pod
			strict(t, doc, &pod)
			if pod.Annotations["k8s.v1.cni.cncf.io/networks"] != "vrouter-red" {
				t.Fatal("pod does not request the attachment")
			}
			sawPod = true
		}
	}
	if !sawNAD || !sawPod {
		t.Fatal("NetworkAttachmentDefinition or Pod missing")
	}
}

// TestDaemonSetMatchesConfig: the DaemonSet's container has the CPUs its config pins
// threads to, reads the config where the ConfigMap is mounted, and mounts the
// directory of every vhost-user socket. Before, forwarding_cpus "2-3" and control_cpus
// "1" (three CPUs) ran in a container limited to two: under the CPU manager's static
// policy the container's cpuset holds two CPUs and pinning to the third fails at
// start; without it, two polling workers and the control thread share a quota of two.
func TestDaemonSetMatchesConfig(t *testing.T) {
	var cm corev1.ConfigMap
	var ds appsv1.DaemonSet
	for _, doc := range docs(t, "daemonset.yaml") {
		switch kind(t, doc) {
		case "ConfigMap":
			strict(t, doc, &cm)
		case "DaemonSet":
			strict(t, doc, &ds)
		}
	}
	cfg, err := config.Parse([]byte(cm.Data["vrouter.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	cpus := cfg.FwdCPUs.Count() + cfg.CtlCPUs.Count()
	for what, rl := range map[string]corev1.ResourceList{"requests": c.Resources.Requests, "limits": c.Resources.Limits} {
		q, ok := rl[corev1.ResourceCPU]
		if !ok || q.MilliValue() != int64(cpus)*1000 {
			t.Errorf("cpu %s %v, want %d (forwarding_cpus %s, control_cpus %s)", what, q.String(), cpus, cfg.ForwardingCPUs, cfg.ControlCPUs)
		}
	}
	mounts := map[string]string{} // mount path -> volume
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	var cfgPath string
	for i, a := range c.Command {
		if a == "-config" && i+1 < len(c.Command) {
			cfgPath = c.Command[i+1]
		}
	}
	if v := mounts[path.Dir(cfgPath)]; v != "config" || path.Base(cfgPath) != "vrouter.yaml" {
		t.Errorf("-config %q is not the ConfigMap's vrouter.yaml (mounts %v)", cfgPath, mounts)
	}
	for _, in := range cfg.Interfaces {
		if in.Vhost != nil && mounts[path.Dir(in.Vhost.Socket)] == "" {
			t.Errorf("%s: socket %s is in no mounted directory (mounts %v)", in.Name, in.Vhost.Socket, mounts)
		}
	}
}
