// Pulling for real: Debian's docker-registry (plain, htpasswd, token server), images built
// with GNU tar and pushed with skopeo, archives written by skopeo and by hand, and the
// result compared with what umoci unpack makes of the same image. The puller runs in this
// process with its real worker threads; the proxy counts and breaks requests.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadFlags } from "../../src/config/flags.ts";
import { startImageService, type ImageService } from "../../src/images/service.ts";
import type { ImageRecord } from "../../src/images/store.ts";
import { runUcr, tempDir } from "../helpers/agent.ts";
import { rejection } from "../helpers/async.ts";
import {
  buildBadLayerImage,
  buildBusyboxImage,
  buildRichImage,
  corruptImage,
  legacyArchive,
  ociArchive,
  pushImage,
  pushIndex,
  saveArchive,
  treeManifest,
  umociUnpack,
  withoutZstd,
  type BadLayerKind,
  type Corruption,
} from "../helpers/images.ts";
import { startProxy, type Fault, type ProxyServer } from "../helpers/proxy.ts";
import { startRegistry, type Registry } from "../helpers/registry.ts";

const work = tempDir("ucr-pull-");
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(work, { recursive: true, force: true });
});

let registry: Registry;
let richDir: string;
let richLayers: string[];
let busyboxDir: string;
let umociTree: ReturnType<typeof treeManifest>;

beforeAll(async () => {
  registry = await startRegistry({ schema1: true });
  cleanups.push(() => registry.stop());
  richDir = join(work, "rich");
  richLayers = buildRichImage(richDir, { tag: "1", zstd: true }).layers.map((l) => l.digest);
  busyboxDir = join(work, "busybox");
  buildBusyboxImage(busyboxDir, { tag: "1" });
  await pushImage(richDir, `${registry.host}/rich:1`, { exact: true });
  await pushImage(busyboxDir, `${registry.host}/busybox:1`, { exact: true });
  // umoci cannot read zstd layers: unpack a gzip copy (same diff_ids, same tree).
  const gz = withoutZstd(richDir, "1");
  cleanups.push(() => gz.cleanup());
  umociTree = treeManifest(await umociUnpack(gz.dir, "1", join(work, "umoci-rich")), { ignoreXattrs: /^trusted\./ });
});

let storeCount = 0;
function service(args: string[] = []): ImageService {
  const root = join(work, `store-${storeCount++}`);
  const flags = loadFlags([`--work_dir=${root}`, ...args], {}).values;
  const s = startImageService(flags);
  cleanups.push(() => s.stop());
  return s;
}

/** Applies an image's layers in order, as the copy backend will: whiteouts delete, opaque dirs empty. */
function merge(s: ImageService, record: ImageRecord): string {
  const out = join(work, `merged-${storeCount++}`);
  mkdirSync(out);
  for (const diffId of record.layers) {
    const layer = s.store.layer(diffId)!;
    for (const w of layer.whiteouts) rmSync(join(out, w), { recursive: true, force: true });
    for (const o of layer.opaques) {
      const d = join(out, o);
      if (existsSync(d)) for (const name of readdirSync(d)) rmSync(join(d, name), { recursive: true, force: true });
    }
    expect(Bun.spawnSync(["cp", "-a", "--", `${s.store.layerRootfs(diffId)}/.`, `${out}/`]).exitCode).toBe(0);
    for (const w of layer.whiteouts) rmSync(join(out, w), { force: true }); // the 0/0 device itself
  }
  return out;
}

function expectSameAsUmoci(s: ImageService, record: ImageRecord): void {
  const ours = treeManifest(merge(s, record), { ignoreXattrs: /^trusted\./ });
  expect(ours).toEqual(umociTree);
}

/** The store holds nothing half-done: no staging left, every layer complete. */
function expectConsistent(s: ImageService): void {
  expect(readdirSync(s.store.stagingDir)).toEqual([]);
  for (const name of readdirSync(s.store.layersDir)) {
    expect(existsSync(join(s.store.layersDir, name, "layer.json"))).toBe(true);
  }
  for (const img of s.store.images()) {
    for (const l of img.layers) expect(s.store.hasLayer(l)).toBe(true);
  }
}

describe("from a registry", () => {
  test("by tag: the layers, merged, are the tree umoci unpack makes", async () => {
    const s = service();
    const record = await s.puller.pull(`${registry.host}/rich:1`);
    expect(record.reference).toBe(`${registry.host}/rich:1`);
    expect(record.layers).toHaveLength(4);
    expectSameAsUmoci(s, record);
    // The config is kept verbatim and says what the image runs.
    expect(s.store.config(record.configDigest).config?.Entrypoint).toEqual(["/bin/echo", "entry"]);
    expectConsistent(s);
  });

  test("by digest, and as a Docker schema 2 manifest pushed by skopeo", async () => {
    const s = service();
    const digest = await pushImage(busyboxDir, `${registry.host}/bb-v2s2:1`, { format: "v2s2" });
    const byTag = await s.puller.pull(`${registry.host}/bb-v2s2:1`);
    expect(byTag.manifestDigest).toBe(digest);
    const byDigest = await s.puller.pull(`${registry.host}/bb-v2s2@${digest}`);
    expect(byDigest.layers).toEqual(byTag.layers);
    expect((await rejection(s.puller.pull(`${registry.host}/bb-v2s2@sha256:${"0".repeat(64)}`))).message).toMatch(/not found on/);
  });

  test("schema 1 (signed, from skopeo --format v2s1)", async () => {
    const s = service();
    await pushImage(richDir, `${registry.host}/rich-s1:1`, { format: "v2s1", srcTag: "1" }).catch(async () => {
      // zstd layers cannot go into schema 1; push the gzip copy.
      const gz = withoutZstd(richDir, "1");
      cleanups.push(() => gz.cleanup());
      await pushImage(gz.dir, `${registry.host}/rich-s1:1`, { format: "v2s1", srcTag: "1" });
    });
    const record = await s.puller.pull(`${registry.host}/rich-s1:1`);
    expectSameAsUmoci(s, record);
    const config = s.store.config(record.configDigest);
    expect(config.config?.Entrypoint).toEqual(["/bin/echo", "entry"]);
    expect(config.rootfs?.diff_ids).toEqual(record.layers);
  });

  for (const kind of ["oci", "docker"] as const) {
    test(`through ${kind === "oci" ? "an OCI index" : "a Docker manifest list"}: this machine's platform is chosen`, async () => {
      const s = service();
      const pushed = await pushIndex({
        registry: registry.host,
        name: `multi-${kind}`,
        tag: "1",
        layoutDir: busyboxDir,
        srcTag: "1",
        kind,
      });
      const record = await s.puller.pull(`${registry.host}/multi-${kind}:1`);
      expect(record.manifestDigest).toBe(pushed.hostDigest);
      expect(s.store.hasLayer(record.layers[0]!)).toBe(true);
    });
  }

  test("a name without a registry goes to --docker_registry; library/ is not added off Docker Hub", async () => {
    const proxy = await startProxy(registry.url);
    cleanups.push(() => proxy.stop());
    const s = service([`--docker_registry=${proxy.url}`]);
    const record = await s.puller.pull("busybox:1");
    expect(record.reference).toBe("docker.io/library/busybox:1");
    expect(proxy.count(/^\/v2\/busybox\/manifests\/1$/)).toBe(1);
  });

  test("layers already in the store are not downloaded again; force_pull refetches only the manifest", async () => {
    const proxy = await startProxy(registry.url);
    cleanups.push(() => proxy.stop());
    const s = service();
    await s.puller.pull(`${proxy.host}/busybox:1`);
    const blobsAfterFirst = proxy.count(/\/blobs\//);
    await s.puller.pull(`${proxy.host}/rich:1`); // shares the busybox layer
    const richLayerGets = proxy.count(/\/rich\/blobs\/sha256:/);
    expect(richLayerGets).toBe(1 + 3); // the config, and the three layers busybox does not have
    await s.puller.pull(`${proxy.host}/rich:1`);
    expect(proxy.count(/\/blobs\//)).toBe(blobsAfterFirst + richLayerGets); // a cache hit: no request at all
    const manifestsBefore = proxy.count(/\/manifests\//);
    await s.puller.pull(`${proxy.host}/rich:1`, { force: true });
    expect(proxy.count(/\/manifests\//)).toBe(manifestsBefore + 1);
    expect(proxy.count(/\/rich\/blobs\/sha256:/)).toBe(richLayerGets + 1); // the config only
  });

  test("20 concurrent pulls of one image download each blob once", async () => {
    const proxy = await startProxy(registry.url);
    cleanups.push(() => proxy.stop());
    const s = service();
    const records = await Promise.all(Array.from({ length: 20 }, () => s.puller.pull(`${proxy.host}/rich:1`)));
    expect(new Set(records.map((r) => r.configDigest)).size).toBe(1);
    const gets = proxy.requests().filter((r) => r.method === "GET" && /\/blobs\//.test(r.path));
    const perBlob = new Map<string, number>();
    for (const r of gets) perBlob.set(r.path, (perBlob.get(r.path) ?? 0) + 1);
    expect(perBlob.size).toBe(5); // config + 4 layers
    for (const count of perBlob.values()) expect(count).toBe(1);
    expectConsistent(s);
  });

  test("5xx and a connection dropped mid-blob: retried, and resumed with Range", async () => {
    const proxy = await startProxy(registry.url, [
      { path: /\/manifests\//, times: 1, kind: "status", status: 503 },
      // The busybox layer (about 1 MiB compressed): cut after 40 kB, once.
      { path: new RegExp(`/blobs/${richLayers[0]}$`), method: "GET", times: 1, kind: "truncate", afterBytes: 40_000 },
    ]);
    cleanups.push(() => proxy.stop());
    const s = service();
    const record = await s.puller.pull(`${proxy.host}/rich:1`);
    expectSameAsUmoci(s, record);
    const ranged = proxy.requests().filter((r) => r.range);
    expect(ranged.length).toBeGreaterThanOrEqual(1);
    expect(ranged[0]!.range).toMatch(/^bytes=\d+-$/);
    expect(ranged[0]!.status).toBe(206);
  });

  test("blob redirects to another host are followed without the registry's Authorization", async () => {
    const auth = await startRegistry({ auth: "basic" });
    cleanups.push(() => auth.stop());
    await pushImage(busyboxDir, `${auth.host}/busybox:1`, { exact: true, creds: auth.creds });
    const storage = await startProxy(auth.url, [], { blobRoot: auth.storageDir });
    cleanups.push(() => storage.stop());
    const front = await startProxy(auth.url, [], { redirectBlobsTo: storage });
    cleanups.push(() => front.stop());
    const config = JSON.stringify({ auths: { [front.host]: { auth: Buffer.from(auth.creds!).toString("base64") } } });
    const s = service([`--docker_config=${config}`]);
    await s.puller.pull(`${front.host}/busybox:1`);
    const redirected = storage.requests().filter((r) => /\/blobs\//.test(r.path));
    expect(redirected.length).toBeGreaterThan(0);
    for (const r of redirected) expect(r.authorization).toBe(false);
    expect(front.requests().some((r) => r.authorization)).toBe(true);
  });
});

describe("authentication", () => {
  test("HTTP Basic with credentials from --docker_config (config.json and legacy .dockercfg)", async () => {
    const reg = await startRegistry({ auth: "basic" });
    cleanups.push(() => reg.stop());
    await pushImage(busyboxDir, `${reg.host}/busybox:1`, { exact: true, creds: reg.creds });
    const b64 = Buffer.from(reg.creds!).toString("base64");
    for (const cfg of [{ auths: { [`http://${reg.host}/v2/`]: { auth: b64 } } }, { [reg.host]: { auth: b64 } }]) {
      const s = service([`--docker_config=${JSON.stringify(cfg)}`]);
      expect((await s.puller.pull(`${reg.host}/busybox:1`)).layers).toHaveLength(1);
    }
    const none = service();
    expect((await rejection(none.puller.pull(`${reg.host}/busybox:1`))).message).toMatch(
      new RegExp(`${reg.host.replace(/\./g, "\\.")} requires a user name and password; add them for .* to --docker_config`),
    );
    const wrong = service([
      `--docker_config=${JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from("ucr:nope").toString("base64") } } })}`,
    ]);
    expect((await rejection(wrong.puller.pull(`${reg.host}/busybox:1`))).message).toMatch(/denied access \(HTTP 401/);
  });

  for (const field of ["token", "access_token"] as const) {
    test(`Bearer tokens from the registry's token service (answer in '${field}')`, async () => {
      const reg = await startRegistry({ auth: "token", tokenField: "both" });
      cleanups.push(() => reg.stop());
      await pushImage(busyboxDir, `${reg.host}/busybox:1`, { exact: true, creds: reg.creds });
      reg.setTokenField(field);
      const s = service([
        `--docker_config=${JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(reg.creds!).toString("base64") } } })}`,
      ]);
      const before = reg.tokenRequests();
      expect((await s.puller.pull(`${reg.host}/busybox:1`)).layers).toHaveLength(1);
      expect(reg.tokenRequests()).toBeGreaterThan(before);
      const last = reg.tokenLog().at(-1)!;
      expect(last.user).toBe(reg.user ?? null);
      expect(last.scopes).toContain("repository:busybox:pull");
      const anonymous = service();
      expect((await rejection(anonymous.puller.pull(`${reg.host}/busybox:1`))).message).toMatch(
        /token service .* refused anonymous access/,
      );
    });
  }
});

describe("from a directory of docker save archives", () => {
  test("the three layouts, under the names Mesos and operators use", async () => {
    const images = join(work, "images");
    mkdirSync(join(images, "library"), { recursive: true });
    const gz = withoutZstd(richDir, "1");
    cleanups.push(() => gz.cleanup());
    await saveArchive(gz.dir, join(images, "alpine.tar"), "alpine:latest", { srcTag: "1" }); // manifest.json, short names
    // skopeo cannot write to a path with ':' in it; name the file afterwards.
    await saveArchive(gz.dir, join(images, "rich-2.tar"), "docker.io/library/rich:2", { srcTag: "1", familiar: false }); // skopeo's long names
    Bun.spawnSync(["mv", join(images, "rich-2.tar"), join(images, "rich:2.tar")]);
    ociArchive(gz.dir, join(images, "library", "ocirich.tar"), { ref: "ocirich:latest", srcTag: "1" }); // Docker 25+
    ociArchive(richDir, join(images, "zstdrich.tar"), { ref: "zstdrich:latest", srcTag: "1", uncompressed: false }); // gzip + zstd layers
    mkdirSync(join(images, "reg.io"), { recursive: true });
    legacyArchive(gz.dir, join(images, "reg.io", "app:1.tar"), "reg.io/app:1", { srcTag: "1" }); // what Mesos reads

    const s = service([`--docker_registry=${images}`]);
    for (const name of ["alpine", "alpine:latest", "docker.io/library/alpine:latest", "rich:2", "ocirich", "zstdrich", "reg.io/app:1"]) {
      const record = await s.puller.pull(name);
      expectSameAsUmoci(s, record);
    }
    expectConsistent(s);
    expect((await rejection(s.puller.pull("missing:1"))).message).toMatch(
      /Failed to find archive for image 'missing:1' \(tried .*missing:1\.tar/,
    );
  });

  test("a tag the archive does not hold is refused unless the file name matched", async () => {
    const images = join(work, "images-tags");
    mkdirSync(images, { recursive: true });
    await saveArchive(busyboxDir, join(images, "bundle.tar"), "busybox:1", { srcTag: "1" });
    const s = service([`--docker_registry=${images}`]);
    // bundle.tar matched the name "bundle", so its single image serves whatever its tag.
    expect((await s.puller.pull("bundle")).layers).toHaveLength(1);
    // `ucr load` of the same file by a name it does not carry is refused.
    expect((await rejection(s.puller.load(join(images, "bundle.tar"), "other:2"))).message).toMatch(
      /holds no image tagged other:2 \(it has: busybox:1\)/,
    );
    expect((await s.puller.load(join(images, "bundle.tar"), "docker.io/library/busybox:1")).reference).toBe("docker.io/library/busybox:1");
  });
});

describe("bad input fails clearly and leaves nothing behind", () => {
  // What a registry refuses to store is served broken by the proxy instead.
  const served: Array<[string, (layer: string) => Fault, RegExp]> = [
    [
      "a layer whose bytes do not match its digest",
      (layer) => ({ path: new RegExp(`/blobs/${layer}$`), method: "GET", times: 10, kind: "corrupt", offset: 5 }),
      /digest mismatch: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}/,
    ],
    [
      "a truncated blob, every time",
      (layer) => ({ path: new RegExp(`/blobs/${layer}$`), method: "GET", times: 100, kind: "truncate", afterBytes: 5000 }),
      /download stopped at \d+ of \d+ bytes|download failed after/,
    ],
    [
      "a manifest that is not JSON",
      () => ({
        path: /\/manifests\//,
        times: 10,
        kind: "body",
        body: "<html>oops</html>",
        headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
      }),
      /manifest is not JSON/,
    ],
    [
      "a manifest of an unknown media type",
      () => ({
        path: /\/manifests\//,
        times: 10,
        kind: "body",
        body: '{"schemaVersion":2}',
        headers: { "content-type": "application/vnd.example.unknown.v1+json" },
      }),
      /unsupported media type 'application\/vnd\.example\.unknown\.v1\+json'/,
    ],
  ];
  for (const [what, fault, pattern] of served) {
    test(`registry: ${what}`, async () => {
      const proxy = await startProxy(registry.url, [fault(richLayers[0]!)]);
      cleanups.push(() => proxy.stop());
      const canary = join(work, `canary-${storeCount}`);
      mkdirSync(canary);
      const s = service();
      expect((await rejection(s.puller.pull(`${proxy.host}/busybox:1`))).message).toMatch(pattern);
      expect(s.store.images()).toEqual([]);
      expect(readdirSync(s.store.layersDir)).toEqual([]);
      expectConsistent(s);
      expect(readdirSync(canary)).toEqual([]);
    });
  }

  const corruptions: Array<[Corruption, RegExp]> = [
    ["truncated-gzip", /stream is corrupt or truncated|not a valid tar/],
    ["diff-id", /\(uncompressed, diff_id\): digest mismatch: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}/],
  ];
  for (const [kind, pattern] of corruptions) {
    test(`registry: ${kind}`, async () => {
      const dir = join(work, `corrupt-${kind}`);
      buildBusyboxImage(dir, { tag: "1" });
      corruptImage(dir, kind, "1");
      await pushImage(dir, `${registry.host}/corrupt-${kind}:1`, { exact: true });
      const s = service();
      expect((await rejection(s.puller.pull(`${registry.host}/corrupt-${kind}:1`))).message).toMatch(pattern);
      expect(s.store.images()).toEqual([]);
      expect(readdirSync(s.store.layersDir)).toEqual([]);
      expectConsistent(s);
    });
  }

  const hostile: Array<[BadLayerKind, RegExp]> = [
    ["traversal", /entry '.*' has a path with '\.\.'/],
    ["absolute", /has an absolute path/],
    ["symlink-escape", /would be written through symlink .* which leads outside the layer/],
    ["hardlink-escape", /hard link target with '\.\.'/],
  ];
  for (const [kind, pattern] of hostile) {
    test(`registry: a ${kind} layer`, async () => {
      const dir = join(work, `bad-${kind}`);
      await buildBadLayerImage(dir, kind, { tag: "1" });
      await pushImage(dir, `${registry.host}/bad-${kind}:1`, { exact: true });
      const s = service();
      expect((await rejection(s.puller.pull(`${registry.host}/bad-${kind}:1`))).message).toMatch(pattern);
      expect(s.store.images()).toEqual([]);
      expectConsistent(s);
      // Only the good busybox layer made it into the store.
      expect(readdirSync(s.store.layersDir).length).toBeLessThanOrEqual(1);
    });
  }

  test("archive: a layer missing from the archive", async () => {
    const images = join(work, "images-broken");
    mkdirSync(images, { recursive: true });
    const stage = join(work, "broken-stage");
    mkdirSync(stage);
    await saveArchive(busyboxDir, join(stage, "full.tar"), "busybox:1", { srcTag: "1" });
    expect(Bun.spawnSync(["tar", "-xf", join(stage, "full.tar"), "-C", stage]).exitCode).toBe(0);
    rmSync(join(stage, "full.tar"));
    const manifest = JSON.parse(await Bun.file(join(stage, "manifest.json")).text()) as Array<{ Layers: string[] }>;
    rmSync(join(stage, manifest[0]!.Layers[0]!), { force: true });
    expect(Bun.spawnSync(["tar", "-cf", join(images, "busybox:1.tar"), "-C", stage, "."]).exitCode).toBe(0);
    const s = service([`--docker_registry=${images}`]);
    expect((await rejection(s.puller.pull("busybox:1"))).message).toMatch(/layer '.*' is missing from the archive/);
    expectConsistent(s);
    writeFileSync(join(images, "junk:1.tar"), "this is not a tar archive at all, just some words padding it out".repeat(20));
    expect((await rejection(s.puller.pull("junk:1"))).message).toMatch(/not a tar archive/);
  });

  test("registry: an unknown image and an invalid name", async () => {
    const s = service();
    expect((await rejection(s.puller.pull(`${registry.host}/nothing:1`))).message).toMatch(
      /pull .*nothing:1: manifest .* not found on .* \(MANIFEST_UNKNOWN/,
    );
    expect((await rejection(s.puller.pull("reg.io/UPPER"))).message).toMatch(
      /pull reg\.io\/UPPER: invalid image reference 'reg\.io\/UPPER': repository name must be lowercase/,
    );
  });
});

test("ucr pull killed mid-download: the store stays consistent and the next pull succeeds", async () => {
  const proxy: ProxyServer = await startProxy(registry.url, [
    { path: /\/blobs\/sha256:/, method: "GET", times: 100, kind: "delay", ms: 400 },
  ]);
  cleanups.push(() => proxy.stop());
  const root = join(work, "killed");
  const ucr = Bun.spawn([`${import.meta.dir}/../../dist/ucr`, "pull", `${proxy.host}/rich:1`, `--work_dir=${root}`], {
    stdout: "pipe",
    stderr: "pipe",
  });
  // Wait until a layer download is under way, then SIGKILL.
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && !proxy.requests().some((r) => /\/blobs\/sha256:/.test(r.path) && r.method === "GET")) await Bun.sleep(20);
  await Bun.sleep(150);
  ucr.kill("SIGKILL");
  expect(await ucr.exited).not.toBe(0);
  const store = join(root, "store/docker");
  expect(readdirSync(join(store, "images"))).toEqual([]);
  for (const name of readdirSync(join(store, "layers"))) expect(existsSync(join(store, "layers", name, "layer.json"))).toBe(true);

  const again = await runUcr(["pull", `${registry.host}/rich:1`, `--work_dir=${root}`], {}, 60_000);
  expect(again.stderr).not.toContain("error");
  expect(again.code).toBe(0);
  expect(again.stdout).toContain(`${registry.host}/rich:1: 4 layer(s)`);
  expect(readdirSync(join(store, "staging"))).toEqual([]); // the dead run's staging was cleaned
  const images = await runUcr(["images", `--work_dir=${root}`]);
  expect(images.stdout).toMatch(new RegExp(`${registry.host.replace(/\./g, "\\.")}/rich:1 +[0-9a-f]{12} +[\\d.]+ [KM]iB +4 `));
});
