// The parts of network/cni that only read text: plugin results in both shapes (what plugins
// 1.1.1 print, as the integration test sees them), plugin errors, --resources and the host
// port allocator. Bad input must be refused with a message saying what was wrong.
import { expect, test } from "bun:test";
import { parseResourcesFlag } from "../../src/config/resources.ts";
import { HostPorts } from "../../src/network/ports.ts";
import { parseResult, pluginErrorText } from "../../src/network/result.ts";

test("a 1.0.0 result: interfaces, ips with interface index, routes, dns", () => {
  const out = JSON.stringify({
    cniVersion: "1.0.0",
    interfaces: [
      { name: "br0", mac: "1a:3d:e8:94:29:47" },
      { name: "veth1", mac: "96:88:c5:c9:ac:58" },
      { name: "eth0", mac: "3e:ce:a6:d0:62:3b", sandbox: "/run/x/ns" },
    ],
    ips: [{ interface: 2, address: "10.250.9.2/24", gateway: "10.250.9.1" }],
    routes: [{ dst: "0.0.0.0/0" }],
    dns: { nameservers: ["10.0.0.53"], search: ["a.example"] },
  });
  const { raw, result } = parseResult(out, "bridge");
  expect(raw).toEqual(JSON.parse(out));
  expect(result).toEqual({
    cniVersion: "1.0.0",
    interfaces: [
      { name: "br0", mac: "1a:3d:e8:94:29:47" },
      { name: "veth1", mac: "96:88:c5:c9:ac:58" },
      { name: "eth0", mac: "3e:ce:a6:d0:62:3b", sandbox: "/run/x/ns" },
    ],
    ips: [{ address: "10.250.9.2/24", gateway: "10.250.9.1", interface: 2, version: 4 }],
    routes: [{ dst: "0.0.0.0/0" }],
    dns: { nameservers: ["10.0.0.53"], search: ["a.example"] },
  });
});

test("a legacy 0.1.0 result (what a config without cniVersion gets, and Mesos reads)", () => {
  const out = JSON.stringify({
    cniVersion: "0.1.0",
    ip4: { ip: "10.250.8.2/24", gateway: "10.250.8.1", routes: [{ dst: "0.0.0.0/0" }] },
    ip6: { ip: "fd00::2/64" },
    dns: {},
  });
  expect(parseResult(out, "bridge").result).toEqual({
    cniVersion: "0.1.0",
    interfaces: [],
    ips: [
      { address: "10.250.8.2/24", gateway: "10.250.8.1", version: 4 },
      { address: "fd00::2/64", version: 6 },
    ],
    routes: [{ dst: "0.0.0.0/0" }],
    dns: {},
  });
});

test("results that are not what a plugin may print are refused, naming what is wrong", () => {
  const bad: Array<[unknown, string]> = [
    ["not json", "printed a result that is not JSON: not json"],
    [[1, 2], "printed a result that is not a JSON object"],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.1.2.3" }] }, "ips.0.address: is not an address with a prefix length (CIDR)"],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.1.2.3/33" }] }, "is not an address with a prefix length"],
    [{ cniVersion: "1.0.0", interfaces: [], ips: [{ address: "10.1.2.3/24", interface: 0 }] }, "ip 10.1.2.3/24 names interface 0 of 0"],
    [{ cniVersion: "1.0.0", ips: [], dns: { nameservers: ["10.0.0.1\nnameserver 6.6.6.6"] } }, "dns.nameservers.0: is not an IP address"],
    [{ cniVersion: "1.0.0", ips: [], dns: { search: ["a.example\noptions evil"] } }, "dns.search.0: must be one word"],
    [{ cniVersion: "0.2.0", ip4: { ip: "fd00::1/64" } }, "ip4.ip fd00::1/64 is not IPv4"],
  ];
  for (const [input, message] of bad) {
    expect(() => parseResult(typeof input === "string" ? input : JSON.stringify(input), "The CNI plugin 'x'")).toThrow(message);
  }
});

test("a plugin's error object is read from stdout (plugins 1.1.1) or stderr; otherwise its output is quoted", () => {
  expect(pluginErrorText('{"code":999,"msg":"must be called as chained plugin"}', "")).toBe("[code 999] must be called as chained plugin");
  expect(pluginErrorText("", '{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}')).toBe(
    "[code 7] invalid config: no bridge",
  );
  expect(pluginErrorText("", "panic: oops\n")).toBe("stderr: panic: oops");
  expect(pluginErrorText("", "")).toBe("no output");
});

test("--resources: Mesos' text and JSON forms; only ports", () => {
  expect(parseResourcesFlag("ports:[31000-32000]")).toEqual([{ begin: 31000, end: 32000 }]);
  expect(parseResourcesFlag("ports(*):[40000-40100, 30000-30010]")).toEqual([
    { begin: 30000, end: 30010 },
    { begin: 40000, end: 40100 },
  ]);
  expect(parseResourcesFlag('[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1000,"end":1001}]}}]')).toEqual([
    { begin: 1000, end: 1001 },
  ]);
  expect(() => parseResourcesFlag("cpus:4;ports:[1-2]")).toThrow("resource 'cpus' is not used by ucr");
  expect(() => parseResourcesFlag("ports:[2-1]")).toThrow("port range 2-1 is not within 1-65535 with begin <= end");
  expect(() => parseResourcesFlag("ports:31000")).toThrow("must be ranges like [31000-32000]");
  expect(() => parseResourcesFlag('[{"name":"ports","type":"SCALAR"}]')).toThrow("must be of type RANGES");
});

test("host ports: 0 takes a free one of the range, a taken one is refused naming its holder, all or nothing", () => {
  const ports = new HostPorts([{ begin: 100, end: 102 }]);
  expect(ports.take("a", [{ hostPort: 0, containerPort: 80, protocol: "tcp" }])).toEqual([
    { hostPort: 100, containerPort: 80, protocol: "tcp" },
  ]);
  expect(
    ports.take("b", [
      { hostPort: 101, containerPort: 80, protocol: "tcp" },
      { hostPort: 101, containerPort: 53, protocol: "udp" },
    ]),
  ).toHaveLength(2);
  expect(() =>
    ports.take("c", [
      { hostPort: 102, containerPort: 1, protocol: "tcp" },
      { hostPort: 101, containerPort: 80, protocol: "tcp" },
    ]),
  ).toThrow("host port 101/tcp is already mapped by container b");
  // c got nothing: 102 is still free, and then the range is used up.
  expect(ports.take("d", [{ hostPort: 0, containerPort: 80, protocol: "tcp" }])[0]!.hostPort).toBe(102);
  expect(() => ports.take("e", [{ hostPort: 0, containerPort: 80, protocol: "tcp" }])).toThrow(
    "no free host port left in ports:[100-102] (--resources)",
  );
  ports.release("a");
  expect(ports.take("e", [{ hostPort: 0, containerPort: 80, protocol: "tcp" }])[0]!.hostPort).toBe(100);
  // Taking again what one already holds is not a conflict (recovery, a retried attach).
  expect(ports.take("e", [{ hostPort: 100, containerPort: 80, protocol: "tcp" }])).toHaveLength(1);
});
