package chart

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// terraform/charts/karpenter-nodes: the EC2NodeClass and NodePool Terraform installs.
// Karpenter's Go types are not a dependency here; the checks read the objects as maps.
func TestKarpenterNodesChart(t *testing.T) {
	const chart = "../../../terraform/charts/karpenter-nodes"
	args := []string{"--kube-version", kubeVersion, "--set", "clusterName=gw", "--set", "nodeRole=gw-karpenter-node",
		"--set-json", `tags={"Project":"infura-gateway"}`}
	if out, err := helm(append([]string{"lint", "--strict", chart}, args...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := helm(append([]string{"template", "nodes", chart}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]map[string]any{}
	for _, doc := range strings.Split(string(out), "\n---") {
		var o map[string]any
		if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o != nil {
			objs[o["apiVersion"].(string)+"/"+o["kind"].(string)] = o
		}
	}
	nc, np := objs["karpenter.k8s.aws/v1/EC2NodeClass"], objs["karpenter.sh/v1/NodePool"]
	if nc == nil || np == nil || len(objs) != 2 {
		t.Fatalf("want an EC2NodeClass and a NodePool (karpenter v1 APIs), got %v", objs)
	}
	get := func(o map[string]any, path ...string) any {
		var v any = o
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		}
		return v
	}
	spec := nc["spec"].(map[string]any)
	if spec["role"] != "gw-karpenter-node" || !strings.HasPrefix(toYAML(t, spec["amiSelectorTerms"]), "- alias: al2023@v") {
		t.Errorf("EC2NodeClass role or pinned AMI alias: %v", spec)
	}
	for _, k := range []string{"subnetSelectorTerms", "securityGroupSelectorTerms"} {
		if !strings.Contains(toYAML(t, spec[k]), "karpenter.sh/discovery: gw") {
			t.Errorf("EC2NodeClass %s must select by the cluster's discovery tag: %v", k, spec[k])
		}
	}
	if get(nc, "spec", "metadataOptions", "httpTokens") != "required" || get(nc, "spec", "metadataOptions", "httpPutResponseHopLimit") != float64(1) {
		t.Errorf("EC2NodeClass must require IMDSv2 out of pods' reach: %v", spec["metadataOptions"])
	}
	ref := get(np, "spec", "template", "spec", "nodeClassRef").(map[string]any)
	if ref["kind"] != "EC2NodeClass" || ref["name"] != get(nc, "metadata", "name") || ref["group"] != "karpenter.k8s.aws" {
		t.Errorf("NodePool nodeClassRef %v does not name the EC2NodeClass", ref)
	}
	if get(np, "spec", "limits", "cpu") == nil || get(np, "spec", "disruption", "budgets") == nil ||
		get(np, "spec", "template", "spec", "expireAfter") == nil {
		t.Errorf("NodePool needs a CPU limit, disruption budgets and expireAfter: %v", np["spec"])
	}
	if out, err := helm("template", "nodes", chart, "--kube-version", kubeVersion); err == nil {
		t.Errorf("rendered without clusterName and nodeRole:\n%s", out)
	}
}
