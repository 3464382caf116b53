// A test client for ucr built on Debian's mesos-go (golang-github-mesos-mesos-go-dev, v0.0.6):
// the library's own HTTP client, codecs and message types talk to a ucr agent, and every step
// prints one JSON line for the test to check (test/clients/mesos-go.test.ts).
//
// Usage: mesos-go-client -agent http://127.0.0.1:PORT [-codec protobuf|json] [-image alpine] SCENARIO...
// Scenarios: info, containers, marshal, sessions. Add one by adding it to the scenarios map; the
// codec comes from codecs.ByMediaType (protobuf, the library's default, unless -codec json). The
// calls v0.0.6 has no message for are rawCall, written in both encodings from the library's own
// generated types.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
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
// types are: in JSON by encoding/json over their ffjson methods (nil slices become null), in
// protobuf by their generated Marshal methods, framed into agent.Call's fields by hand with
// agent.proto's numbers (calls and fields the v0.0.6 Call lacks).
type rawCall struct {
	Type    string
	Field   string
	Payload protoPayload
}

// protoPayload is a rawCall's payload: JSON by its tags, protobuf by marshalProto.
type protoPayload interface{ marshalProto() ([]byte, error) }

// agent.proto's Call.Type numbers and Call field numbers of the calls rawCall sends.
var callTypes = map[string]uint64{"GET_CONTAINERS": 10, "LAUNCH_CONTAINER": 22, "WAIT_CONTAINER": 23, "KILL_CONTAINER": 24,
	"REMOVE_CONTAINER": 25, "PRUNE_IMAGES": 30}
var callFields = map[string]int{"get_containers": 20, "launch_container": 13, "wait_container": 14, "kill_container": 15,
	"remove_container": 16, "prune_images": 21}

func (c rawCall) MarshalJSON() ([]byte, error) {
	m := map[string]interface{}{"type": c.Type}
	if c.Field != "" {
		m[c.Field] = c.Payload
	}
	return json.Marshal(m)
}

// Marshal is the protobuf form (what the library's protobuf codec calls, through gogo's proto.Marshal).
func (c rawCall) Marshal() ([]byte, error) {
	typ, ok := callTypes[c.Type]
	if !ok {
		return nil, fmt.Errorf("no Call.Type number for %s in this client", c.Type)
	}
	b := appendVarint(nil, 1, typ)
	if c.Field == "" {
		return b, nil
	}
	payload, err := c.Payload.marshalProto()
	if err != nil {
		return nil, fmt.Errorf("marshalling %s: %v", c.Field, err)
	}
	return appendBytes(b, callFields[c.Field], payload), nil
}

// Reset, String and ProtoMessage make a rawCall a gogo proto.Message, as the protobuf codec requires.
func (c rawCall) Reset()         {}
func (c rawCall) String() string { return c.Type }
func (c rawCall) ProtoMessage()  {}

// The protobuf wire format (key = field << 3 | wire type; varints; length-delimited bytes).
func appendVarint(b []byte, field int, v uint64) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3)
	return binary.AppendUvarint(b, v)
}

func appendBytes(b []byte, field int, data []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

type marshaler interface{ Marshal() ([]byte, error) }

func appendMessage(b []byte, field int, m marshaler) ([]byte, error) {
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return appendBytes(b, field, data), nil
}

// rawAnswer keeps an answer the v0.0.6 types cannot decode (a Response type they lack), in the
// encoding it came in; Reset, String and ProtoMessage make it a gogo proto.Message.
type rawAnswer struct {
	body  []byte
	proto bool
}

func (a *rawAnswer) UnmarshalJSON(b []byte) error {
	a.body = append([]byte(nil), b...)
	return nil
}
func (a *rawAnswer) Unmarshal(b []byte) error {
	a.body = append([]byte(nil), b...)
	a.proto = true
	return nil
}
func (a *rawAnswer) Reset()         { *a = rawAnswer{} }
func (a *rawAnswer) String() string { return string(a.body) }
func (a *rawAnswer) ProtoMessage()  {}

// protoFields reads one level of a protobuf message: field number -> varints and byte strings.
func protoFields(b []byte) (map[int][]uint64, map[int][][]byte, error) {
	varints, blobs := map[int][]uint64{}, map[int][][]byte{}
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, nil, fmt.Errorf("a bad field key")
		}
		b = b[n:]
		field := int(key >> 3)
		switch key & 7 {
		case 0:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, nil, fmt.Errorf("a bad varint in field %d", field)
			}
			varints[field] = append(varints[field], v)
			b = b[n:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return nil, nil, fmt.Errorf("a bad length in field %d", field)
			}
			blobs[field] = append(blobs[field], b[n:n+int(l)])
			b = b[n+int(l):]
		default:
			return nil, nil, fmt.Errorf("wire type %d in field %d is not one agent.Response uses here", key&7, field)
		}
	}
	return varints, blobs, nil
}

// waitAnswer is a WAIT_CONTAINER answer in its JSON shape, from either encoding (agent.proto:
// Response.type = 1, wait_container = 16 {exit_status = 1, message = 5}).
func waitAnswer(a *rawAnswer) (interface{}, error) {
	if !a.proto {
		return json.RawMessage(a.body), nil
	}
	varints, blobs, err := protoFields(a.body)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if t := varints[1]; len(t) == 1 && t[0] == 15 {
		out["type"] = "WAIT_CONTAINER"
	}
	if w := blobs[16]; len(w) == 1 {
		inner := map[string]interface{}{}
		v, b, err := protoFields(w[0])
		if err != nil {
			return nil, err
		}
		if s := v[1]; len(s) == 1 {
			inner["exit_status"] = int32(s[0])
		}
		if m := b[5]; len(m) == 1 {
			inner["message"] = string(m[0])
		}
		out["wait_container"] = inner
	}
	return out, nil
}

// sendRaw sends a rawCall through the library's HTTP client (its transport, headers and codec).
func (e *env) sendRaw(c rawCall, rc client.ResponseClass) (*rawAnswer, error) {
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
	return &a, nil
}

// containerList is GET_CONTAINERS' answer. In JSON, agent.Response decodes it. In protobuf,
// v0.0.6's GetContainers.Container still requires framework_id and executor_id (Mesos 1.1's
// schema; optional since standalone containers, which have neither): its decoder refuses what
// Mesos 1.12 and ucr send, so the list is taken apart here (Response.get_containers = 10,
// containers = 1, container_id = 4, container_status = 5) and each part decoded by the
// library's own ContainerID and ContainerStatus.
func containerList(a *rawAnswer) ([]agent.Response_GetContainers_Container, error) {
	if !a.proto {
		var r agent.Response
		if err := json.Unmarshal(a.body, &r); err != nil || r.GetContainers == nil {
			return nil, err
		}
		return r.GetContainers.Containers, nil
	}
	_, top, err := protoFields(a.body)
	if err != nil || len(top[10]) == 0 {
		return nil, err
	}
	_, list, err := protoFields(top[10][0])
	if err != nil {
		return nil, err
	}
	var out []agent.Response_GetContainers_Container
	for _, blob := range list[1] {
		_, parts, err := protoFields(blob)
		if err != nil {
			return nil, err
		}
		var c agent.Response_GetContainers_Container
		for _, id := range parts[4] {
			if err := c.ContainerID.Unmarshal(id); err != nil {
				return nil, err
			}
		}
		for _, status := range parts[5] {
			c.ContainerStatus = &mesos.ContainerStatus{}
			if err := c.ContainerStatus.Unmarshal(status); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	return out, nil
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

func (l launchContainer) marshalProto() ([]byte, error) {
	b, err := appendMessage(nil, 1, &l.ContainerID)
	if err != nil {
		return nil, err
	}
	if l.Command != nil {
		if b, err = appendMessage(b, 2, l.Command); err != nil {
			return nil, err
		}
	}
	for i := range l.Resources {
		if b, err = appendMessage(b, 3, &l.Resources[i]); err != nil {
			return nil, err
		}
	}
	if l.Container != nil {
		if b, err = appendMessage(b, 4, l.Container); err != nil {
			return nil, err
		}
	}
	for name, value := range l.Limits {
		// A map entry: key = 1, value = 2.
		entry := appendBytes(nil, 1, []byte(name))
		if entry, err = appendMessage(entry, 2, value); err != nil {
			return nil, err
		}
		b = appendBytes(b, 5, entry)
	}
	return b, nil
}

type containerRef struct {
	ContainerID mesos.ContainerID `json:"container_id"`
	Signal      *uint32           `json:"signal,omitempty"`
}

func (r containerRef) marshalProto() ([]byte, error) {
	b, err := appendMessage(nil, 1, &r.ContainerID)
	if err != nil {
		return nil, err
	}
	if r.Signal != nil {
		b = appendVarint(b, 2, uint64(*r.Signal))
	}
	return b, nil
}

type pruneImages struct {
	ExcludedImages []mesos.Image `json:"excluded_images"`
}

func (p pruneImages) marshalProto() (b []byte, err error) {
	for i := range p.ExcludedImages {
		if b, err = appendMessage(b, 1, &p.ExcludedImages[i]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

type getContainers struct {
	ShowNested     bool `json:"show_nested"`
	ShowStandalone bool `json:"show_standalone"`
}

func (g getContainers) marshalProto() ([]byte, error) {
	b := appendVarint(nil, 1, boolVarint(g.ShowNested))
	return appendVarint(b, 2, boolVarint(g.ShowStandalone)), nil
}

func boolVarint(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

func scalar(name string, v float64) mesos.Resource {
	t := mesos.SCALAR
	return mesos.Resource{Name: name, Type: &t, Scalar: &mesos.Value_Scalar{Value: v}}
}

func (e *env) parentLaunch(id string) rawCall {
	return e.launch(id, "sleep 600", nil)
}

// launch is a LAUNCH_CONTAINER of `script` in the image, with a terminal if tty is given.
func (e *env) launch(id, script string, tty *mesos.TTYInfo) rawCall {
	shell := true
	dockerType := mesos.Image_DOCKER
	return rawCall{"LAUNCH_CONTAINER", "launch_container", launchContainer{
		ContainerID: mesos.ContainerID{Value: id},
		Command:     &mesos.CommandInfo{Shell: &shell, Value: &script},
		Resources:   []mesos.Resource{scalar("cpus", 0.25), scalar("mem", 64)},
		Container: &mesos.ContainerInfo{
			Type:    mesos.ContainerInfo_MESOS.Enum(),
			Mesos:   &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{Type: &dockerType, Docker: &mesos.Image_Docker{Name: e.image}}},
			TTYInfo: tty,
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

	raw, err := e.sendRaw(rawCall{"GET_CONTAINERS", "get_containers", getContainers{ShowNested: true, ShowStandalone: true}},
		client.ResponseClassSingleton)
	var listed []agent.Response_GetContainers_Container
	if err == nil {
		listed, err = containerList(raw)
	}
	step("GET_CONTAINERS", func() interface{} {
		var out []map[string]interface{}
		for _, c := range listed {
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
	parentWait, err := e.wait(parentID)
	step("WAIT_CONTAINER", parentWait, err)
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

// wait is WAIT_CONTAINER's answer in its JSON shape (decoded by hand from protobuf).
func (e *env) wait(id mesos.ContainerID) (interface{}, error) {
	raw, err := e.sendRaw(rawCall{"WAIT_CONTAINER", "wait_container", containerRef{ContainerID: id}}, client.ResponseClassSingleton)
	if err != nil {
		return nil, err
	}
	return waitAnswer(raw)
}

// output gathers a streaming answer's ProcessIO records, decoded by the library's types,
// until it ends; `seen` is told after each record (it may return true to stop reading).
func output(res mesos.Response, seen func(stdout string) bool) (map[string]interface{}, error) {
	var stdout, stderr strings.Builder
	heartbeats := 0
	for {
		var m agent.ProcessIO
		err := res.Decode(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch {
		case m.GetType() == agent.ProcessIO_DATA && m.GetData().GetType() == agent.ProcessIO_Data_STDOUT:
			stdout.Write(m.GetData().GetData())
		case m.GetType() == agent.ProcessIO_DATA && m.GetData().GetType() == agent.ProcessIO_Data_STDERR:
			stderr.Write(m.GetData().GetData())
		case m.GetType() == agent.ProcessIO_CONTROL && m.GetControl().GetType() == agent.ProcessIO_Control_HEARTBEAT:
			heartbeats++
		}
		if seen != nil && seen(stdout.String()) {
			break
		}
	}
	return map[string]interface{}{"stdout": stdout.String(), "stderr": stderr.String(), "heartbeats": heartbeats}, nil
}

// sessions: LAUNCH_NESTED_CONTAINER_SESSION under a standalone container (its output read with
// the library's ProcessIO type, its status by WAIT_NESTED_CONTAINER); a container with a
// terminal attached with ATTACH_CONTAINER_OUTPUT and fed by ATTACH_CONTAINER_INPUT (the
// library's streaming request: the container ID, a window size, stdin data), ended through it.
func sessions(e *env) bool {
	parent := e.prefix + "sparent"
	if _, err := e.sendRaw(e.parentLaunch(parent), client.ResponseClassNoData); !step("LAUNCH_CONTAINER", nil, err) {
		return false
	}
	parentID := mesos.ContainerID{Value: parent}
	sessionID := mesos.ContainerID{Value: "session", Parent: &parentID}
	shell := true
	script := "echo out-$FROM_SESSION-$((40+2)); echo err >&2; exit 3"
	yes := "yes"
	env := &mesos.Environment{Variables: []mesos.Environment_Variable{{Name: "FROM_SESSION", Value: &yes}}}
	res, err := e.sender.Send(context.Background(), calls.NonStreaming(calls.LaunchNestedContainerSession(sessionID,
		&mesos.CommandInfo{Shell: &shell, Value: &script, Environment: env}, nil)))
	var got map[string]interface{}
	if err == nil {
		got, err = output(res, nil)
		res.Close()
	}
	step("LAUNCH_NESTED_CONTAINER_SESSION", got, err)
	r, err := e.send(calls.WaitNestedContainer(sessionID))
	step("WAIT_NESTED_CONTAINER session", func() interface{} {
		if r == nil || r.WaitNestedContainer == nil || r.WaitNestedContainer.ExitStatus == nil {
			return nil
		}
		return map[string]int32{"exit_status": *r.WaitNestedContainer.ExitStatus}
	}(), err)

	// A container with a terminal: attached, fed, resized, ended through its input.
	tty := e.prefix + "tty"
	ttyID := mesos.ContainerID{Value: tty}
	window := &mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: 24, Columns: 80}}
	if _, err := e.sendRaw(e.launch(tty, "exec sh", window), client.ResponseClassNoData); !step("LAUNCH_CONTAINER tty", nil, err) {
		return false
	}
	out, err := e.sender.Send(context.Background(), calls.NonStreaming(calls.AttachContainerOutput(ttyID)))
	if !step("ATTACH_CONTAINER_OUTPUT", nil, err) {
		return false
	}
	inputs := make(chan *agent.Call, 8)
	var wg sync.WaitGroup
	var inputErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err := e.sender.Send(context.Background(), calls.FromChan(inputs))
		if res != nil {
			res.Close()
		}
		inputErr = err
	}()
	inputs <- calls.AttachContainerInput(ttyID)
	inputs <- calls.AttachContainerInputTTY(&mesos.TTYInfo{WindowSize: &mesos.TTYInfo_WindowSize{Rows: 40, Columns: 120}})
	inputs <- calls.AttachContainerInputData([]byte("echo in-$((6*7)) $(stty size) $(tty)\n"))
	seenMarker := false
	got, err = output(out, func(stdout string) bool {
		if !seenMarker && strings.Contains(stdout, "in-42 ") {
			seenMarker = true
			inputs <- calls.AttachContainerInputData([]byte("exit 4\n"))
			close(inputs)
		}
		return false
	})
	out.Close()
	step("ATTACH_CONTAINER_OUTPUT records", got, err)
	wg.Wait()
	step("ATTACH_CONTAINER_INPUT", nil, inputErr)
	waited, err := e.wait(ttyID)
	step("WAIT_CONTAINER tty", waited, err)

	// A second writer while one holds the input (seen holding it: its command's output came
	// back): the library reports the 409.
	second := e.prefix + "tty2"
	secondID := mesos.ContainerID{Value: second}
	if _, err := e.sendRaw(e.launch(second, "exec sh", window), client.ResponseClassNoData); !step("LAUNCH_CONTAINER tty2", nil, err) {
		return false
	}
	held, err := e.sender.Send(context.Background(), calls.NonStreaming(calls.AttachContainerOutput(secondID)))
	if !step("ATTACH_CONTAINER_OUTPUT tty2", nil, err) {
		return false
	}
	holder := make(chan *agent.Call, 3)
	holder <- calls.AttachContainerInput(secondID)
	holder <- calls.AttachContainerInputData([]byte("echo held-$((1+1))\n"))
	go e.sender.Send(context.Background(), calls.FromChan(holder))
	output(held, func(stdout string) bool { return strings.Contains(stdout, "held-2\r\n") })
	conflict := make(chan *agent.Call, 1)
	conflict <- calls.AttachContainerInput(secondID)
	close(conflict)
	res, err = e.sender.Send(context.Background(), calls.FromChan(conflict))
	if res != nil {
		res.Close()
	}
	step("ATTACH_CONTAINER_INPUT second", nil, err)
	holder <- calls.AttachContainerInputData([]byte("exit 0\n"))
	close(holder)
	held.Close()

	for _, id := range []mesos.ContainerID{parentID, secondID, ttyID} {
		e.sendRaw(rawCall{"KILL_CONTAINER", "kill_container", containerRef{ContainerID: id}}, client.ResponseClassNoData)
		e.wait(id)
		e.sendRaw(rawCall{"REMOVE_CONTAINER", "remove_container", containerRef{ContainerID: id}}, client.ResponseClassNoData)
	}
	return true
}

var scenarios = map[string]func(*env) bool{"info": info, "containers": containers, "marshal": marshal, "sessions": sessions}

func main() {
	agentURL := flag.String("agent", "http://127.0.0.1:5051", "the agent's base URL")
	codecName := flag.String("codec", "protobuf", "protobuf (the library's default) or json (a codec of codecs.ByMediaType)")
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
