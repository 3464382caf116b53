// A test client for ucr built on Debian's mesos-go (golang-github-mesos-mesos-go-dev, v0.0.6):
// the library's own HTTP client, codecs and message types talk to a ucr agent, and every step
// prints one JSON line for the test to check (test/clients/mesos-go.test.ts).
//
// Usage: mesos-go-client -agent http://127.0.0.1:PORT [-codec json] [-image alpine] SCENARIO...
// Scenarios: info, containers, marshal, streaming. Add one by adding it to the scenarios map; the codec
// comes from codecs.ByMediaType, so a protobuf run needs only -codec protobuf and calls whose
// Marshal (protobuf) is written (see rawCall).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/agent/calls"
	"github.com/mesos/mesos-go/api/v1/lib/client"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpagent"
)

// env is what every scenario gets: the library's client and sender, and the flags.
type env struct {
	cli    *httpcli.Client
	sender calls.Sender
	codec  encoding.Codec
	image  string
	prefix string
}

// step prints one result line: {"step": name, "ok": err == nil, "result": ..., "error": ...}.
func step(name string, result interface{}, err error) bool {
	line := map[string]interface{}{"step": name, "ok": err == nil}
	if err != nil {
		line["error"] = err.Error()
	} else if result != nil {
		line["result"] = result
	}
	b, _ := json.Marshal(line)
	fmt.Println(string(b))
	return err == nil
}

// send runs an agent.Call through the library's sender (its response classes, its headers)
// and decodes a singleton answer into agent.Response.
func (e *env) send(c *agent.Call) (*agent.Response, error) {
	res, err := e.sender.Send(context.Background(), calls.NonStreaming(c))
	if err != nil {
		return nil, err
	}
	if res == nil {
		return nil, nil
	}
	defer res.Close()
	var r agent.Response
	if err := res.Decode(&r); err != nil {
		return nil, fmt.Errorf("decoding the %v answer: %v", c.GetType(), err)
	}
	return &r, nil
}

// rawCall is a Call type that mesos-go v0.0.6 has no message for (LAUNCH_CONTAINER, ...):
// the payload is built from the library's own message types and marshalled the way its
// types are (encoding/json over their ffjson methods: nil slices become null). Protobuf
// encoding of these is not written yet; Marshal says so instead of sending something wrong.
type rawCall struct {
	Type    string
	Field   string
	Payload interface{}
}

func (c rawCall) MarshalJSON() ([]byte, error) {
	m := map[string]interface{}{"type": c.Type}
	if c.Field != "" {
		m[c.Field] = c.Payload
	}
	return json.Marshal(m)
}

func (c rawCall) Marshal() ([]byte, error) {
	return nil, fmt.Errorf("protobuf encoding of %s is not written in this client yet", c.Type)
}

// rawAnswer keeps an answer the v0.0.6 types cannot decode (a Response type they lack).
type rawAnswer struct{ body json.RawMessage }

func (a *rawAnswer) UnmarshalJSON(b []byte) error {
	a.body = append(json.RawMessage(nil), b...)
	return nil
}
func (a *rawAnswer) Unmarshal(b []byte) error {
	a.body = append(json.RawMessage(nil), b...)
	return nil
}

// sendRaw sends a rawCall through the library's HTTP client (its transport and headers).
func (e *env) sendRaw(c rawCall, rc client.ResponseClass) (json.RawMessage, error) {
	res, err := e.cli.Send(client.RequestSingleton(c), rc)
	if err != nil {
		return nil, err
	}
	if res == nil {
		return nil, nil
	}
	defer res.Close()
	var a rawAnswer
	if err := res.Decode(&a); err != nil {
		return nil, fmt.Errorf("decoding the %s answer: %v", c.Type, err)
	}
	return a.body, nil
}

// launchContainer is agent.proto's LaunchContainer, which v0.0.6 lacks, from its types.
// Limits is the field newer mesos-go versions write as null when unset.
type launchContainer struct {
	ContainerID mesos.ContainerID              `json:"container_id"`
	Command     *mesos.CommandInfo             `json:"command,omitempty"`
	Resources   []mesos.Resource               `json:"resources"`
	Limits      map[string]*mesos.Value_Scalar `json:"limits"`
	Container   *mesos.ContainerInfo           `json:"container,omitempty"`
}

type containerRef struct {
	ContainerID mesos.ContainerID `json:"container_id"`
	Signal      *uint32           `json:"signal,omitempty"`
}

type pruneImages struct {
	ExcludedImages []mesos.Image `json:"excluded_images"`
}

func scalar(name string, v float64) mesos.Resource {
	t := mesos.SCALAR
	return mesos.Resource{Name: name, Type: &t, Scalar: &mesos.Value_Scalar{Value: v}}
}

func (e *env) parentLaunch(id string) rawCall {
	shell := true
	value := "sleep 600"
	dockerType := mesos.Image_DOCKER
	return rawCall{"LAUNCH_CONTAINER", "launch_container", launchContainer{
		ContainerID: mesos.ContainerID{Value: id},
		Command:     &mesos.CommandInfo{Shell: &shell, Value: &value},
		Resources:   []mesos.Resource{scalar("cpus", 0.25), scalar("mem", 64)},
		Container: &mesos.ContainerInfo{
			Type:  mesos.ContainerInfo_MESOS.Enum(),
			Mesos: &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{Type: &dockerType, Docker: &mesos.Image_Docker{Name: e.image}}},
		},
	}}
}

func childLaunch(parent, id string) *agent.Call {
	shell := false
	value := "/bin/sleep"
	return calls.LaunchNestedContainer(
		mesos.ContainerID{Value: id, Parent: &mesos.ContainerID{Value: parent}},
		&mesos.CommandInfo{Shell: &shell, Value: &value, Arguments: []string{"sleep", "600"}},
		&mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum()},
	)
}

// info: GET_HEALTH, GET_VERSION and GET_FLAGS through the library, answers decoded by its types.
func info(e *env) bool {
	ok := true
	r, err := e.send(calls.GetHealth())
	ok = step("GET_HEALTH", func() interface{} {
		if r == nil || r.GetHealth == nil {
			return nil
		}
		return map[string]bool{"healthy": r.GetHealth.Healthy}
	}(), err) && ok
	r, err = e.send(calls.GetVersion())
	ok = step("GET_VERSION", func() interface{} {
		if r == nil || r.GetVersion == nil {
			return nil
		}
		return map[string]string{"version": r.GetVersion.VersionInfo.Version}
	}(), err) && ok
	r, err = e.send(calls.GetFlags())
	ok = step("GET_FLAGS", func() interface{} {
		if r == nil || r.GetFlags == nil {
			return nil
		}
		flags := map[string]string{}
		for _, f := range r.GetFlags.Flags {
			flags[f.Name] = f.GetValue()
		}
		return flags
	}(), err) && ok
	return ok
}

// containers: a standalone parent launched with a mesos-go-shaped LAUNCH_CONTAINER (nulls
// included), a nested child through LAUNCH/WAIT/KILL/REMOVE_NESTED_CONTAINER, then the
// parent killed, waited for and removed, and PRUNE_IMAGES with excluded_images null.
func containers(e *env) bool {
	parent := e.prefix + "parent"
	child := e.prefix + "child"
	if _, err := e.sendRaw(e.parentLaunch(parent), client.ResponseClassNoData); !step("LAUNCH_CONTAINER", nil, err) {
		return false
	}
	if _, err := e.send(childLaunch(parent, child)); !step("LAUNCH_NESTED_CONTAINER", nil, err) {
		return false
	}
	childID := mesos.ContainerID{Value: child, Parent: &mesos.ContainerID{Value: parent}}
	type waited struct {
		r   *agent.Response
		err error
	}
	done := make(chan waited, 1)
	go func() {
		r, err := e.send(calls.WaitNestedContainer(childID))
		done <- waited{r, err}
	}()

	raw, err := e.sendRaw(rawCall{"GET_CONTAINERS", "get_containers", map[string]bool{"show_nested": true, "show_standalone": true}},
		client.ResponseClassSingleton)
	var listed agent.Response
	if err == nil {
		err = json.Unmarshal(raw, &listed)
	}
	step("GET_CONTAINERS", func() interface{} {
		if listed.GetContainers == nil {
			return nil
		}
		var out []map[string]interface{}
		for _, c := range listed.GetContainers.Containers {
			entry := map[string]interface{}{"value": c.ContainerID.Value}
			if c.ContainerStatus != nil && c.ContainerStatus.ExecutorPID != nil {
				entry["executor_pid"] = *c.ContainerStatus.ExecutorPID
			}
			out = append(out, entry)
		}
		return out
	}(), err)

	_, err = e.send(calls.KillNestedContainer(childID))
	step("KILL_NESTED_CONTAINER", nil, err)
	var w waited
	select {
	case w = <-done:
	case <-time.After(60 * time.Second):
		w = waited{nil, fmt.Errorf("no answer to WAIT_NESTED_CONTAINER within 60s of the kill")}
	}
	step("WAIT_NESTED_CONTAINER", func() interface{} {
		if w.r == nil || w.r.WaitNestedContainer == nil {
			return nil
		}
		res := map[string]interface{}{}
		if w.r.WaitNestedContainer.ExitStatus != nil {
			res["exit_status"] = *w.r.WaitNestedContainer.ExitStatus
		}
		return res
	}(), w.err)
	_, err = e.send(calls.RemoveNestedContainer(childID))
	step("REMOVE_NESTED_CONTAINER", nil, err)

	parentID := mesos.ContainerID{Value: parent}
	_, err = e.sendRaw(rawCall{"KILL_CONTAINER", "kill_container", containerRef{ContainerID: parentID}}, client.ResponseClassNoData)
	step("KILL_CONTAINER", nil, err)
	raw, err = e.sendRaw(rawCall{"WAIT_CONTAINER", "wait_container", containerRef{ContainerID: parentID}}, client.ResponseClassSingleton)
	step("WAIT_CONTAINER", raw, err)
	_, err = e.sendRaw(rawCall{"REMOVE_CONTAINER", "remove_container", containerRef{ContainerID: parentID}}, client.ResponseClassNoData)
	step("REMOVE_CONTAINER", nil, err)
	_, err = e.sendRaw(rawCall{"PRUNE_IMAGES", "prune_images", pruneImages{}}, client.ResponseClassNoData)
	return step("PRUNE_IMAGES", nil, err)
}

// marshal: the bodies this client sends, as the library marshals them, for the test to
// check that they carry what real clients send (nulls for empty repeated fields).
func marshal(e *env) bool {
	ok := true
	for _, m := range []struct {
		name string
		call encoding.Marshaler
	}{
		{"LAUNCH_CONTAINER", e.parentLaunch(e.prefix + "parent")},
		{"LAUNCH_NESTED_CONTAINER", childLaunch(e.prefix+"parent", e.prefix+"child")},
		{"PRUNE_IMAGES", rawCall{"PRUNE_IMAGES", "prune_images", pruneImages{}}},
	} {
		b, err := json.Marshal(m.call)
		ok = step("marshal "+m.name, json.RawMessage(b), err) && ok
	}
	return ok
}

// streaming: the library's streaming calls, which it sends with two Accept lines
// (application/json, then application/recordio) and Message-Accept. Their errors are the
// result: the test checks how far into ucr each call got.
func streaming(e *env) bool {
	id := mesos.ContainerID{Value: e.prefix + "stream", Parent: &mesos.ContainerID{Value: e.prefix + "parent"}}
	shell := true
	value := "true"
	for _, c := range []*agent.Call{
		calls.AttachContainerOutput(id),
		calls.LaunchNestedContainerSession(id, &mesos.CommandInfo{Shell: &shell, Value: &value}, nil),
	} {
		res, err := e.sender.Send(context.Background(), calls.NonStreaming(c))
		if res != nil {
			res.Close()
		}
		step(c.GetType().String(), nil, err)
	}
	return true
}

var scenarios = map[string]func(*env) bool{"info": info, "containers": containers, "marshal": marshal, "streaming": streaming}

func main() {
	agentURL := flag.String("agent", "http://127.0.0.1:5051", "the agent's base URL")
	codecName := flag.String("codec", "json", "json or protobuf (a media type of codecs.ByMediaType)")
	image := flag.String("image", "alpine", "the image of the standalone parent container")
	prefix := flag.String("prefix", "mesos-go-", "prefix of the container IDs this client makes")
	flag.Parse()

	var codec encoding.Codec
	found := false
	for _, c := range codecs.ByMediaType {
		if c.Name == *codecName {
			codec, found = c, true
		}
	}
	if !found {
		fmt.Fprintf(os.Stderr, "mesos-go-client: unknown codec %q (json or protobuf)\n", *codecName)
		os.Exit(2)
	}
	cli := httpcli.New(httpcli.Endpoint(*agentURL+"/api/v1"), httpcli.Codec(codec))
	e := &env{cli: cli, sender: httpagent.NewSender(cli.Send), codec: codec, image: *image, prefix: *prefix}

	code := 0
	for _, name := range flag.Args() {
		run, ok := scenarios[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "mesos-go-client: unknown scenario %q\n", name)
			os.Exit(2)
		}
		if !run(e) {
			code = 1
		}
	}
	os.Exit(code)
}
