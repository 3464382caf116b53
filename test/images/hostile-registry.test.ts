// A registry (or what answers in its name) is untrusted: a real docker-registry serves real
// images through a hostile front that rewrites realms, redirects, Content-Types, sizes, bodies
// and pace. Each case asserts the clear error naming what was wrong (or the safe outcome),
// that no credentials went where they must not, that nothing outside the store changed (a
// sentinel directory, compared before and after) and that no half-written layer or image is left.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadFlags } from "../../src/config/flags.ts";
import { startImageService, type ImageService } from "../../src/images/service.ts";
import { tempDir } from "../helpers/agent.ts";
import { rejection } from "../helpers/async.ts";
import { startHostile, snapshot, type HostileServer, type Rule } from "../helpers/hostile-registry.ts";
import { BUSYBOX_CONFIG, addImage, foreignArch, packTar, pushImage, saveArchive, type BuiltImage } from "../helpers/images.ts";
import { startRegistry, type Registry } from "../helpers/registry.ts";

const work = tempDir("ucr-hostile-reg-");
const sentinel = join(work, "sentinel");
const cleanups: Array<() => Promise<void> | void> = [];
let plain: Registry;
let basic: Registry;
let tiny: BuiltImage;
let tinyDir: string;
let foreignDir: string;
/** The docker v2 manifest the plain registry serves for tiny:1, as text. */
let tinyManifest: string;

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(work, { recursive: true, force: true });
});

beforeAll(async () => {
  mkdirSync(join(sentinel, "sub"), { recursive: true });
  writeFileSync(join(sentinel, "secret"), "host secret\n");
  writeFileSync(join(sentinel, "sub", "file"), "sub file\n");
  plain = await startRegistry();
  basic = await startRegistry({ auth: "basic" });
  cleanups.push(
    () => plain.stop(),
    () => basic.stop(),
  );
  const layer = await packTar([
    { name: "hello.txt", content: "hello\n" },
    { name: "bin/", type: "directory" },
  ]);
  tinyDir = join(work, "tiny");
  tiny = addImage(tinyDir, { tag: "1", layers: [{ tar: layer, compression: "gzip" }], config: BUSYBOX_CONFIG });
  await pushImage(tinyDir, `${plain.host}/tiny:1`, { exact: true });
  await pushImage(tinyDir, `${basic.host}/tiny:1`, { exact: true, creds: basic.creds });
  foreignDir = join(work, "foreign");
  addImage(foreignDir, {
    tag: "1",
    layers: [{ tar: layer, compression: "gzip" }],
    config: BUSYBOX_CONFIG,
    architecture: foreignArch(),
  });
  await pushImage(foreignDir, `${plain.host}/foreign:1`, { exact: true });
  tinyManifest = await (
    await fetch(`${plain.url}/v2/tiny/manifests/1`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } })
  ).text();
});

let before: string[];
beforeEach(() => {
  before = snapshot(sentinel);
});

let count = 0;
function service(args: string[] = []): ImageService {
  const root = join(work, `store-${count++}`);
  const s = startImageService(loadFlags([`--work_dir=${root}`, ...args], {}).values);
  cleanups.push(() => s.stop());
  return s;
}

async function front(upstream: string, rules: Rule[], hostname = "127.0.0.1"): Promise<HostileServer> {
  const f = await startHostile({ upstream, rules, hostname });
  cleanups.push(() => f.stop());
  return f;
}

async function server(rules: Rule[], hostname = "127.0.0.1"): Promise<HostileServer> {
  const f = await startHostile({ rules, hostname });
  cleanups.push(() => f.stop());
  return f;
}

/** Credentials for `host` in --docker_config form. */
function creds(host: string): string {
  return `--docker_config=${JSON.stringify({ auths: { [host]: { auth: Buffer.from(basic.creds!).toString("base64") } } })}`;
}

/** The failure's message, after checking the store holds nothing half-done and the sentinel is untouched. */
async function refused(s: ImageService, name: string): Promise<string> {
  const err = await rejection(s.puller.pull(name));
  expectClean(s);
  return err.message;
}

function expectClean(s: ImageService): void {
  expect(s.store.images()).toEqual([]);
  expect(readdirSync(s.store.stagingDir)).toEqual([]);
  for (const d of readdirSync(s.store.layersDir)) expect(existsSync(join(s.store.layersDir, d, "layer.json"))).toBe(true);
  expect(snapshot(sentinel)).toEqual(before);
}

const layerPath = () => new RegExp(`/blobs/${tiny.layers[0]!.digest}$`);
const configPath = () => new RegExp(`/blobs/${tiny.config.digest}$`);

describe("credentials and realms", () => {
  test("a Bearer realm on another host over plain http gets no credentials; the error says so", async () => {
    const token = await server(
      [{ path: /\/token$/, kind: "body", status: 401, body: '{"errors":[{"code":"UNAUTHORIZED"}]}' }],
      "127.0.0.2",
    );
    const f = await front(basic.url, [{ path: /^\/v2\//, kind: "challenge", value: `Bearer realm="${token.url}/token",service="reg"` }]);
    const s = service([creds(f.host)]);
    const msg = await refused(s, `${f.host}/tiny:1`);
    expect(msg).toContain(`the token service ${token.url}/token refused anonymous access (HTTP 401`);
    expect(msg).toContain(`the credentials for ${f.host} were not sent to it: it is another host over plain http`);
    expect(token.requests().length).toBeGreaterThan(0);
    expect(token.requests().every((r) => r.authorization === undefined)).toBe(true);
  });

  test("the same realm, listed in --docker_insecure_registries, does get them", async () => {
    const token = await server([{ path: /\/token$/, kind: "body", status: 401, body: "no" }], "127.0.0.2");
    const f = await front(basic.url, [{ path: /^\/v2\//, kind: "challenge", value: `Bearer realm="${token.url}/token"` }]);
    const s = service([creds(f.host), `--docker_insecure_registries=${token.host}`]);
    expect(await refused(s, `${f.host}/tiny:1`)).toContain("refused the credentials from --docker_config");
    expect(token.requests()[0]?.authorization).toBe(`Basic ${Buffer.from(basic.creds!).toString("base64")}`);
  });

  test("a realm on the registry's own host name (another port) gets them, as Mesos' same-host rule allows", async () => {
    const token = await server([{ path: /\/token$/, kind: "body", status: 401, body: "no" }], "127.0.0.1");
    const f = await front(basic.url, [{ path: /^\/v2\//, kind: "challenge", value: `Bearer realm="${token.url}/token"` }]);
    const s = service([creds(f.host)]);
    expect(await refused(s, `${f.host}/tiny:1`)).toContain("refused the credentials from --docker_config");
    expect(token.requests()[0]?.authorization).toStartWith("Basic ");
  });

  for (const realm of [`file://${sentinel}/secret`, "data:application/json,%7B%22token%22%3A%22x%22%7D", "ftp://127.0.0.1/token"]) {
    const scheme = realm.slice(0, realm.indexOf(":"));
    test(`a ${scheme}: realm is refused, naming the scheme`, async () => {
      const f = await front(basic.url, [{ path: /^\/v2\//, kind: "challenge", value: `Bearer realm="${realm}"` }]);
      const s = service([creds(f.host)]);
      expect(await refused(s, `${f.host}/tiny:1`)).toMatch(
        new RegExp(`sent a token realm with scheme '${scheme}' .*; ucr follows only http and https`),
      );
    });
  }

  test("a 100 MB token answer is refused after 1 MiB, without the rest being read", async () => {
    const token = await server([{ path: /\/token$/, kind: "huge", size: 100 * 1024 * 1024 }]);
    const f = await front(basic.url, [{ path: /^\/v2\//, kind: "challenge", value: `Bearer realm="${token.url}/token"` }]);
    const s = service([creds(f.host)]);
    expect(await refused(s, `${f.host}/tiny:1`)).toContain(`the token service ${token.url}/token answered with more than 1048576 bytes`);
    // The client hung up: what the server got out is the cap plus socket buffers, not 100 MB.
    expect(token.requests()[0]!.bytes).toBeLessThan(32 * 1024 * 1024);
  });

  test("a token answer declaring 100 MB is refused before its body is read", async () => {
    const token = await server([{ path: /\/token$/, kind: "huge", size: 100 * 1024 * 1024, declare: true }]);
    const f = await front(basic.url, [{ path: /^\/v2\//, kind: "challenge", value: `Bearer realm="${token.url}/token"` }]);
    const s = service([creds(f.host)]);
    expect(await refused(s, `${f.host}/tiny:1`)).toContain("answered with more than 1048576 bytes");
    expect(token.requests()[0]!.bytes).toBeLessThan(32 * 1024 * 1024);
  });
});

describe("redirects", () => {
  for (const location of [`file://${sentinel}/secret`, "data:application/octet-stream;base64,aGVsbG8K"]) {
    const scheme = location.slice(0, location.indexOf(":"));
    test(`a blob redirect to ${scheme}: is refused, naming the scheme`, async () => {
      const f = await front(plain.url, [{ path: layerPath(), method: "GET", kind: "redirect", location }]);
      const s = service();
      expect(await refused(s, `${f.host}/tiny:1`)).toMatch(
        new RegExp(`sent a redirect with scheme '${scheme}'.*ucr follows only http and https`),
      );
    });
  }

  test("a blob redirect to another host over http is followed without the registry's credentials", async () => {
    const digest = tiny.layers[0]!.digest;
    const blobs = await server(
      [{ path: new RegExp(`/${digest}$`), kind: "body", body: readFileSync(basic.blobFile(digest)) }],
      "127.0.0.2",
    );
    const f = await front(basic.url, [{ path: layerPath(), method: "GET", kind: "redirect", location: `${blobs.url}/storage/${digest}` }]);
    const s = service([creds(f.host)]);
    const record = await s.puller.pull(`${f.host}/tiny:1`);
    expect(record.layers).toEqual([tiny.layers[0]!.diffId]);
    expect(blobs.requests()).toHaveLength(1);
    expect(blobs.requests()[0]!.authorization).toBeUndefined();
    // The registry itself did get them.
    expect(f.requests().some((r) => r.authorization?.startsWith("Basic "))).toBe(true);
    expect(snapshot(sentinel)).toEqual(before);
  });
});

describe("sizes and bounds", () => {
  test("a 50 MB manifest is refused at 4 MiB, while it streams", async () => {
    const f = await front(plain.url, [{ path: /\/manifests\/1$/, kind: "huge", size: 50 * 1024 * 1024 }]);
    const s = service();
    expect(await refused(s, `${f.host}/tiny:1`)).toContain("manifest is larger than 4 MiB");
    expect(f.requests().find((r) => r.rule === "huge")!.bytes).toBeLessThan(32 * 1024 * 1024);
  });

  test("a layer blob longer than its descriptor says is refused at the first byte too many", async () => {
    const f = await front(plain.url, [{ path: layerPath(), method: "GET", kind: "append", extra: new Uint8Array(5000), declare: false }]);
    const s = service();
    expect(await refused(s, `${f.host}/tiny:1`)).toContain(
      `the registry sent more than the ${tiny.layers[0]!.size} bytes its descriptor says`,
    );
  });

  test("a layer blob whose Content-Length contradicts its descriptor is refused before it is read", async () => {
    const f = await front(plain.url, [{ path: layerPath(), method: "GET", kind: "append", extra: new Uint8Array(10), declare: true }]);
    const s = service();
    expect(await refused(s, `${f.host}/tiny:1`)).toContain(
      `the registry says ${tiny.layers[0]!.size + 10} bytes; its descriptor says ${tiny.layers[0]!.size}`,
    );
  });

  test("a config blob replaced by 50 MB is refused at its descriptor's size", async () => {
    const f = await front(plain.url, [
      { path: configPath(), method: "GET", kind: "huge", size: 50 * 1024 * 1024, contentType: "application/octet-stream" },
    ]);
    const s = service();
    expect(await refused(s, `${f.host}/tiny:1`)).toContain(`the registry sent more than the ${tiny.config.size} bytes its descriptor says`);
    expect(f.requests().find((r) => r.rule === "huge")!.bytes).toBeLessThan(32 * 1024 * 1024);
  });

  test("a manifest fetched through an index must have the size its descriptor says", async () => {
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        { ...tiny.manifest, size: tiny.manifest.size + 1, platform: { architecture: tiny.configJson.architecture, os: "linux" } },
      ],
    });
    const f = await front(plain.url, [
      { path: /\/manifests\/multi$/, kind: "body", body: index, contentType: "application/vnd.oci.image.index.v1+json" },
    ]);
    const s = service();
    expect(await refused(s, `${f.host}/tiny:multi`)).toContain(
      `the registry sent ${tiny.manifest.size} bytes; its descriptor says ${tiny.manifest.size + 1}`,
    );
  });
});

test("a download cut midway from a registry that ignores Range starts over from the first byte, and succeeds", async () => {
  const size = tiny.layers[0]!.size;
  const f = await front(plain.url, [
    { path: layerPath(), method: "GET", kind: "cut", after: Math.floor(size / 2), times: 1 },
    { path: layerPath(), method: "GET", kind: "no-range" },
  ]);
  const s = service();
  const record = await s.puller.pull(`${f.host}/tiny:1`);
  expect(record.layers).toEqual([tiny.layers[0]!.diffId]);
  const gets = f.requests().filter((r) => layerPath().test(r.path));
  expect(gets.map((r) => [r.rule, r.status])).toEqual([
    ["cut", 200],
    ["no-range", 200], // asked with Range, answered whole: cannot be resumed
    ["no-range", 200], // so started over
  ]);
  expect(readdirSync(s.store.stagingDir)).toEqual([]);
});

describe("deadlines", () => {
  test("a blob that drips slower than 1 byte/s is aborted after --fetcher_stall_timeout", async () => {
    const f = await front(plain.url, [{ path: layerPath(), method: "GET", kind: "drip", bytes: 1, everyMs: 1500 }]);
    const s = service(["--fetcher_stall_timeout=1secs"]);
    expect(await refused(s, `${f.host}/tiny:1`)).toMatch(/stalled: less than 1 byte\/s for 1secs \(--fetcher_stall_timeout\)/);
  });

  test("a blob sent at 5 bytes/s (not stalled) is aborted at --image_fetch_timeout", async () => {
    const f = await front(plain.url, [{ path: layerPath(), method: "GET", kind: "drip", bytes: 1, everyMs: 200 }]);
    const s = service(["--fetcher_stall_timeout=1secs", "--image_fetch_timeout=3secs"]);
    expect(await refused(s, `${f.host}/tiny:1`)).toMatch(/did not finish within 3secs \(--image_fetch_timeout\)/);
  });

  test("a registry that never answers the manifest request is given up on", async () => {
    const f = await front(plain.url, [{ path: /\/manifests\/1$/, kind: "silent" }]);
    const s = service(["--fetcher_stall_timeout=1secs"]);
    expect(await refused(s, `${f.host}/tiny:1`)).toMatch(/manifest .*tiny:1: stalled/);
  });

  test("a token service that never answers is given up on", async () => {
    const token = await server([{ path: /\/token$/, kind: "silent" }]);
    const f = await front(basic.url, [{ path: /^\/v2\//, kind: "challenge", value: `Bearer realm="${token.url}/token"` }]);
    const s = service([creds(f.host), "--fetcher_stall_timeout=1secs"]);
    expect(await refused(s, `${f.host}/tiny:1`)).toMatch(/stalled/);
  });
});

describe("confused manifests (CVE-2021-41190)", () => {
  test("a document that is both an image manifest and an index is refused", async () => {
    const both = JSON.stringify({ ...JSON.parse(tinyManifest), manifests: [] });
    const f = await front(plain.url, [
      { path: /\/manifests\/1$/, kind: "body", body: both, contentType: "application/vnd.oci.image.manifest.v1+json" },
    ]);
    const s = service();
    expect(await refused(s, `${f.host}/tiny:1`)).toMatch(
      /is ambiguous: it has 'manifests' \(an index\) and 'config'\/'layers' \(an image manifest\)/,
    );
  });

  test("a mediaType that contradicts the Content-Type is refused", async () => {
    const f = await front(plain.url, [
      { path: /\/manifests\/1$/, kind: "content-type", value: "application/vnd.docker.distribution.manifest.v2+json" },
    ]);
    const s = service();
    expect(await refused(s, `${f.host}/tiny:1`)).toContain(
      "its mediaType 'application/vnd.oci.image.manifest.v1+json' contradicts the Content-Type " +
        "'application/vnd.docker.distribution.manifest.v2+json'",
    );
  });

  test("an index entry whose mediaType is not what the registry then serves is refused", async () => {
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          ...tiny.manifest,
          mediaType: "application/vnd.docker.distribution.manifest.v2+json",
          platform: { architecture: tiny.configJson.architecture, os: "linux" },
        },
      ],
    });
    const f = await front(plain.url, [
      { path: /\/manifests\/multi$/, kind: "body", body: index, contentType: "application/vnd.oci.image.index.v1+json" },
    ]);
    const s = service();
    expect(await refused(s, `${f.host}/tiny:multi`)).toContain(
      "its descriptor says 'application/vnd.docker.distribution.manifest.v2+json' but it is 'application/vnd.oci.image.manifest.v1+json'",
    );
  });
});

describe("platforms", () => {
  test("a single-platform image for another architecture is refused; --docker_allow_foreign_platform lets it in", async () => {
    const s = service();
    expect(await refused(s, `${plain.host}/foreign:1`)).toMatch(
      new RegExp(`image is built for linux/${foreignArch()}, not for this machine \\(linux/[a-z0-9]+\\).*--docker_allow_foreign_platform`),
    );
    const allowed = service(["--docker_allow_foreign_platform"]);
    const record = await allowed.puller.pull(`${plain.host}/foreign:1`);
    expect(allowed.store.config(record.configDigest).architecture).toBe(foreignArch());
  });

  test("the same from an archive (ucr load's path)", async () => {
    const archive = join(work, "foreign.tar");
    await saveArchive(foreignDir, archive, "foreign:1", { srcTag: "1" });
    const s = service();
    const err = await rejection(s.puller.load(archive, "foreign:1"));
    expect(err.message).toMatch(new RegExp(`is built for linux/${foreignArch()}, not for this machine`));
    expectClean(s);
  });
});

test("--docker_registry=/dir: a name that carries a registry host is pulled from that registry", async () => {
  const dir = join(work, "archives");
  mkdirSync(dir, { recursive: true });
  const s = service([`--docker_registry=${dir}`]);
  const record = await s.puller.pull(`${plain.host}/tiny:1`);
  expect(record.source).toBe(`http://${plain.host}/tiny`);
  expect(record.layers).toEqual([tiny.layers[0]!.diffId]);
  // Names without one still come from the directory, and say where they looked.
  expect((await rejection(s.puller.pull("tiny:1"))).message).toContain(
    `Failed to find archive for image 'tiny:1' (tried ${dir}/tiny:1.tar`,
  );
});
