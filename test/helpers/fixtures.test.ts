// Proves the image-pull fixtures do what pull tests rely on: real registries (none, basic,
// token, schema1) that skopeo can push to, the faulting proxy, image layouts and archives.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as tarStream from "tar-stream";
import { tempDir } from "./agent.ts";
import { type CommandResult, runCommand } from "./command.ts";
import {
  type BadLayerKind,
  type BuiltImage,
  MT,
  RICH,
  UNKNOWN_MEDIA_TYPE,
  buildBadLayerImage,
  buildBusyboxImage,
  buildRichImage,
  corruptImage,
  decompress,
  findManifest,
  foreignArch,
  haveZstd,
  hostArch,
  isRoot,
  legacyArchive,
  loadImage,
  ociArchive,
  pushImage,
  pushIndex,
  readBlob,
  registryFetch,
  saveArchive,
  sha256,
  tarList,
  treeManifest,
  umociUnpack,
} from "./images.ts";
import { type ProxyServer, startProxy } from "./proxy.ts";
import { type Registry, SCHEMA1_SUPPORTED, startRegistry } from "./registry.ts";

const work = tempDir("ucr-fixtures-");
let busybox: BuiltImage;
let rich: BuiltImage;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(() => {
  busybox = buildBusyboxImage(join(work, "busybox"));
  rich = buildRichImage(join(work, "rich"));
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(work, { recursive: true, force: true });
});

async function registry(opts: Parameters<typeof startRegistry>[0]): Promise<Registry> {
  const r = await startRegistry(opts);
  cleanups.push(() => r.stop());
  return r;
}

async function proxy(...args: Parameters<typeof startProxy>): Promise<ProxyServer> {
  const p = await startProxy(...args);
  cleanups.push(() => p.stop());
  return p;
}

function skopeo(args: string[]): Promise<CommandResult> {
  return runCommand(["skopeo", "--insecure-policy", ...args]);
}

/** skopeo copy of busybox:1 from `host` with `creds` to an OCI layout `dest` in the work dir. */
function skopeoPull(host: string, creds: string, dest: string): Promise<CommandResult> {
  return skopeo([
    "copy",
    "--quiet",
    "--src-tls-verify=false",
    "--src-creds",
    creds,
    `docker://${host}/busybox:1`,
    `oci:${join(work, dest)}:x`,
  ]);
}

function creds(r: Registry): string[] {
  return r.creds ? ["--creds", r.creds] : ["--no-creds"];
}

async function inspect(ref: string, r: Registry): Promise<{ Digest: string; Layers: string[]; Architecture: string }> {
  const out = await skopeo(["inspect", "--tls-verify=false", ...creds(r), `docker://${ref}`]);
  if (out.code !== 0) throw new Error(`skopeo inspect ${ref}: ${out.stderr}`);
  return JSON.parse(out.stdout) as { Digest: string; Layers: string[]; Architecture: string };
}

interface RawHeader {
  name: string;
  type?: string | null;
  linkname?: string | null;
  devmajor?: number;
  devminor?: number;
}

/** Entries of a tar exactly as recorded (GNU tar -t would clean some names up). */
async function rawEntries(tar: Uint8Array): Promise<RawHeader[]> {
  const ex = tarStream.extract();
  const out: RawHeader[] = [];
  const done = (async () => {
    for await (const entry of ex as AsyncIterable<{ header: RawHeader; resume(): void }>) {
      out.push(entry.header);
      entry.resume();
    }
  })();
  ex.end(Buffer.from(tar));
  await done;
  return out;
}

const hex = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

describe("image layouts", () => {
  test("busybox: one gzip layer, digests and diff_ids match the bytes", () => {
    expect(busybox.layers).toHaveLength(1);
    const layer = busybox.layers[0]!;
    expect(layer.mediaType).toBe(MT.ociLayerGzip);
    const blob = readBlob(busybox.dir, layer.digest);
    expect(hex(blob)).toBe(layer.digest);
    expect(blob.byteLength).toBe(layer.size);
    expect(hex(decompress(blob, "gzip"))).toBe(busybox.configJson.rootfs.diff_ids[0]!);
    expect(busybox.configJson.config.Cmd).toEqual(["/bin/sh"]);
    expect(busybox.configJson.config.Entrypoint).toBeUndefined();
    expect(busybox.configJson.architecture).toBe(hostArch());
    expect(busybox.configJson.os).toBe("linux");
    expect(findManifest(busybox.dir, "latest").digest).toBe(busybox.manifest.digest);
  });

  test("rich: gzip, zstd and plain layers over the same busybox layer", () => {
    expect(rich.layers.map((l) => l.mediaType)).toEqual([
      MT.ociLayerGzip,
      MT.ociLayerGzip,
      haveZstd ? MT.ociLayerZstd : MT.ociLayerGzip,
      MT.ociLayerTar,
    ]);
    // Built the same way twice, the base layer is the same blob: a shared layer for dedup tests.
    expect(rich.layers[0]!.digest).toBe(busybox.layers[0]!.digest);
    for (const [i, l] of rich.layers.entries()) {
      expect(hex(decompress(readBlob(rich.dir, l.digest), l.compression))).toBe(rich.configJson.rootfs.diff_ids[i]!);
    }
    expect(rich.configJson.config).toMatchObject({
      Entrypoint: ["/bin/echo", "entry"],
      Cmd: ["cmd"],
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "FOO=bar"],
      WorkingDir: "/work",
      User: "1000:1000",
    });
    const manifest = JSON.parse(readBlob(rich.dir, rich.manifest.digest).toString()) as { config: { digest: string } };
    expect(manifest.config.digest).toBe(rich.config.digest);
  });

  test("rich layers were written by GNU tar with whiteouts, pax xattrs and long names", async () => {
    const entries = await rawEntries(decompress(readBlob(rich.dir, rich.layers[1]!.digest), "gzip"));
    const names = entries.map((e) => e.name);
    expect(names).toContain(`.${RICH.longName}`);
    expect(names).toContain(`.${RICH.deepFile}`);
    expect(entries.find((e) => e.name === "./links/hard2")?.type).toBe("link");
    if (isRoot)
      expect(entries.find((e) => e.name === `.${RICH.charDev}`)).toMatchObject({ type: "character-device", devmajor: 1, devminor: 3 });
    const wh = await rawEntries(decompress(readBlob(rich.dir, rich.layers[2]!.digest), rich.layers[2]!.compression));
    expect(wh.map((e) => e.name)).toEqual(expect.arrayContaining(["etc/rich/.wh.old.txt", "opt/opq/.wh..wh..opq"]));
  });

  test.each([
    "traversal",
    "absolute",
    "symlink-escape",
    "symlink-escape-relative",
    "hardlink-escape",
    "hardlink-absolute",
  ] as BadLayerKind[])("bad layer %s holds the hostile entry verbatim", async (kind) => {
    const img = await buildBadLayerImage(join(work, `bad-${kind}`), kind);
    const top = img.layers[1]!;
    const entries = await rawEntries(decompress(readBlob(img.dir, top.digest), "gzip"));
    const want = {
      traversal: { name: "../evil" },
      absolute: { name: "/etc/evil" },
      "symlink-escape": { name: "esc", type: "symlink", linkname: "/tmp" },
      "symlink-escape-relative": { name: "esc", type: "symlink" },
      "hardlink-escape": { name: "hl", type: "link", linkname: "../../etc/passwd" },
      "hardlink-absolute": { name: "hl", type: "link", linkname: "/etc/passwd" },
    }[kind];
    expect(entries).toContainEqual(expect.objectContaining(want));
  });

  test("corruptions change exactly what they say", () => {
    const fresh = (name: string) => buildBusyboxImage(join(work, `corrupt-${name}`));
    {
      const img = fresh("digest");
      corruptImage(img.dir, "layer-digest");
      expect(hex(readBlob(img.dir, img.layers[0]!.digest))).not.toBe(img.layers[0]!.digest);
    }
    {
      const img = fresh("trunc");
      corruptImage(img.dir, "truncated-gzip");
      const after = loadImage(img.dir);
      expect(hex(readBlob(img.dir, after.layers[0]!.digest))).toBe(after.layers[0]!.digest);
      expect(after.layers[0]!.size).toBeLessThan(img.layers[0]!.size);
      expect(() => decompress(readBlob(img.dir, after.layers[0]!.digest), "gzip")).toThrow();
    }
    {
      const img = fresh("diffid");
      corruptImage(img.dir, "diff-id");
      const after = loadImage(img.dir);
      expect(after.configJson.rootfs.diff_ids[0]).not.toBe(img.configJson.rootfs.diff_ids[0]);
      expect(after.manifest.digest).not.toBe(img.manifest.digest);
    }
    {
      const img = fresh("notjson");
      const d = corruptImage(img.dir, "manifest-not-json");
      expect(() => JSON.parse(readBlob(img.dir, d.digest).toString())).toThrow();
      expect(findManifest(img.dir, "latest").digest).toBe(d.digest);
    }
    {
      const img = fresh("mediatype");
      const d = corruptImage(img.dir, "unknown-media-type");
      expect(d.mediaType).toBe(UNKNOWN_MEDIA_TYPE);
      expect(JSON.parse(readBlob(img.dir, d.digest).toString()).mediaType).toBe(UNKNOWN_MEDIA_TYPE);
    }
  });
});

describe.each(["none", "basic", "token"] as const)("registry with auth %s", (auth) => {
  let reg: Registry;
  let px: ProxyServer;
  let bbDigest = "";
  let richDigest = "";

  beforeAll(async () => {
    reg = await registry({ auth });
    px = await proxy(reg.url);
  });

  test("skopeo pushes busybox (v2s2) and rich (oci, zstd kept, plain layer gzipped)", async () => {
    bbDigest = await pushImage(busybox.dir, `${reg.host}/busybox:1`, { creds: reg.creds, format: "v2s2" });
    expect(bbDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const viaSkopeo = await pushImage(rich.dir, `${reg.host}/rich:skopeo`, { creds: reg.creds, format: "oci" });
    const out = await skopeo(["inspect", "--raw", "--tls-verify=false", ...creds(reg), `docker://${reg.host}/rich:skopeo`]);
    expect(sha256(out.stdout)).toBe(viaSkopeo);
    const m = JSON.parse(out.stdout) as { layers: Array<{ mediaType: string; digest: string }> };
    expect(m.layers.slice(0, 3).map((l) => l.digest)).toEqual(rich.layers.slice(0, 3).map((l) => l.digest));
    expect(m.layers[3]!.mediaType).toBe(MT.ociLayerGzip);
    if (auth !== "none") {
      await expect(pushImage(busybox.dir, `${reg.host}/busybox:anon`, {})).rejects.toThrow();
      await expect(pushImage(busybox.dir, `${reg.host}/busybox:anon`, { exact: true })).rejects.toThrow();
    }
  });

  test("an exact push keeps the layout's bytes, plain layer included", async () => {
    richDigest = await pushImage(rich.dir, `${reg.host}/rich:1`, { creds: reg.creds, exact: true });
    expect(richDigest).toBe(rich.manifest.digest);
    expect(readFileSync(reg.blobFile(rich.layers[3]!.digest)).byteLength).toBe(rich.layers[3]!.size);
  });

  test("skopeo inspect works through the proxy", async () => {
    const bb = await inspect(`${px.host}/busybox:1`, reg);
    expect(bb.Digest).toBe(bbDigest);
    expect(bb.Architecture).toBe(hostArch());
    const r = await inspect(`${px.host}/rich:1`, reg);
    expect(r.Digest).toBe(richDigest);
    expect(r.Layers).toEqual(rich.layers.map((l) => l.digest));
    expect(px.count(/\/manifests\//)).toBeGreaterThan(0);
    const gets = px.requests().filter((q) => q.path === "/v2/rich/manifests/1" && q.status === 200);
    expect(gets.length).toBeGreaterThan(0);
    expect(gets.every((q) => q.authorization === (auth !== "none"))).toBe(true);
    if (auth !== "none") expect(px.requests().some((q) => q.path === "/v2/" && q.status === 401)).toBe(true);
    if (auth === "token") expect(reg.tokenRequests()).toBeGreaterThan(0);
    expect(reg.log()).toContain("response completed");
  });

  test("skopeo pushes through the proxy (uploads follow the rewritten Location)", async () => {
    px.clear();
    // A layer the registry does not have yet, so it must really be uploaded.
    const img = buildBusyboxImage(join(work, `via-proxy-${auth}`), { compression: "none" });
    const d = await pushImage(img.dir, `${px.host}/viaproxy:1`, { creds: reg.creds, exact: true });
    expect(d).toBe(img.manifest.digest);
    const uploads = px.requests().filter((q) => q.path.startsWith("/v2/viaproxy/blobs/uploads/"));
    expect(uploads.map((q) => [q.method, q.status])).toContainEqual(["PUT", 201]);
    expect(px.requests().some((q) => q.method === "PUT" && q.path === "/v2/viaproxy/manifests/1" && q.status === 201)).toBe(true);
    const viaSkopeo = await pushImage(busybox.dir, `${px.host}/viaproxy:2`, { creds: reg.creds, format: "v2s2" });
    expect(viaSkopeo).toBe(bbDigest);
  });
});

describe("token server", () => {
  let reg: Registry;
  beforeAll(async () => {
    reg = await registry({ auth: "token", tokenField: "token", tokenExpiresIn: 120 });
    await pushImage(busybox.dir, `${reg.host}/busybox:1`, { creds: reg.creds });
  });

  const basic = () => ({ Authorization: `Basic ${Buffer.from(reg.creds!).toString("base64")}` });
  const tokenUrl = (scope: string) => `${reg.tokenUrl}?service=${reg.service}&scope=${encodeURIComponent(scope)}`;

  test("the registry challenges with the token server's realm", async () => {
    const r = await fetch(`${reg.url}/v2/busybox/manifests/1`);
    expect(r.status).toBe(401);
    const challenge = r.headers.get("www-authenticate") ?? "";
    expect(challenge).toContain(`realm="${reg.tokenUrl}"`);
    expect(challenge).toContain(`service="${reg.service}"`);
    expect(challenge).toContain('scope="repository:busybox:pull"');
  });

  test("answers in the configured field(s), with expires_in and an access claim", async () => {
    const before = reg.tokenRequests();
    const shape = async () =>
      (await (await fetch(tokenUrl("repository:busybox:pull"), { headers: basic() })).json()) as Record<string, unknown>;
    const onlyToken = await shape();
    expect(typeof onlyToken.token).toBe("string");
    expect(onlyToken.access_token).toBeUndefined();
    expect(onlyToken.expires_in).toBe(120);
    reg.setTokenField("access_token");
    const onlyAccess = await shape();
    expect(onlyAccess.token).toBeUndefined();
    expect(typeof onlyAccess.access_token).toBe("string");
    reg.setTokenField("both");
    const both = await shape();
    expect(both.token).toBe(both.access_token);
    expect(reg.tokenRequests()).toBe(before + 3);

    const [h, c] = String(both.token)
      .split(".")
      .slice(0, 2)
      .map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
    expect(h).toMatchObject({ alg: "ES256", typ: "JWT" });
    expect(c).toMatchObject({
      iss: reg.issuer,
      aud: reg.service,
      sub: reg.user,
      access: [{ type: "repository", name: "busybox", actions: ["pull"] }],
    });
  });

  test("a token from the access_token field works with the registry", async () => {
    reg.setTokenField("access_token");
    try {
      const r = await registryFetch(`${reg.url}/v2/busybox/manifests/1`, {
        creds: reg.creds,
        headers: { Accept: `${MT.ociManifest}, ${MT.dockerManifest}` },
      });
      expect(r.status).toBe(200);
      expect(r.headers.get("docker-content-digest")).toMatch(/^sha256:/);
      const out = await skopeo(["inspect", "--tls-verify=false", "--creds", reg.creds!, `docker://${reg.host}/busybox:1`]);
      expect(out.code).toBe(0);
    } finally {
      reg.setTokenField("both");
    }
  });

  test("refuses anonymous and wrong credentials", async () => {
    expect((await fetch(tokenUrl("repository:busybox:pull"))).status).toBe(401);
    const bad = { Authorization: `Basic ${Buffer.from(`${reg.user}:wrong`).toString("base64")}` };
    expect((await fetch(tokenUrl("repository:busybox:pull"), { headers: bad })).status).toBe(401);
    const log = reg.tokenLog();
    expect(log.at(-1)).toMatchObject({ status: 401, user: reg.user });
    expect(log.at(-2)).toMatchObject({ status: 401, user: null });
  });
});

describe("schema1", () => {
  test("a schema1 registry takes skopeo --format v2s1 and serves a signed schema1 manifest", async () => {
    expect(SCHEMA1_SUPPORTED).toBe(true);
    const reg = await registry({ schema1: true, auth: "basic" });
    await pushImage(busybox.dir, `${reg.host}/old:1`, { creds: reg.creds, format: "v2s1" });
    const r = await registryFetch(`${reg.url}/v2/old/manifests/1`, { creds: reg.creds, headers: { Accept: MT.schema1Signed } });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe(MT.schema1Signed);
    const m = (await r.json()) as { schemaVersion: number; fsLayers: unknown[]; history: unknown[]; signatures: unknown[] };
    expect(m.schemaVersion).toBe(1);
    expect(m.fsLayers).toHaveLength(1);
    expect(m.history).toHaveLength(1);
    expect(m.signatures.length).toBeGreaterThan(0);
  });

  test("without it, distribution 2.8 refuses schema1", async () => {
    const reg = await registry({});
    await expect(pushImage(busybox.dir, `${reg.host}/old:1`, { format: "v2s1" })).rejects.toThrow(/500|unsupported/);
  });
});

describe("proxy", () => {
  let reg: Registry;
  const layer = () => busybox.layers[0]!;
  const blobPath = () => `/v2/busybox/blobs/${layer().digest}`;

  beforeAll(async () => {
    reg = await registry({ auth: "basic" });
    await pushImage(busybox.dir, `${reg.host}/busybox:1`, { creds: reg.creds, format: "oci" });
  });
  const auth = () => ({ Authorization: `Basic ${Buffer.from(reg.creds!).toString("base64")}` });

  test("forwards HEAD, Range and Location faithfully", async () => {
    const px = await proxy(reg.url);
    const head = await fetch(`${px.url}${blobPath()}`, { method: "HEAD", headers: auth() });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(layer().size));
    expect(head.headers.get("docker-content-digest")).toBe(layer().digest);
    const part = await fetch(`${px.url}${blobPath()}`, { headers: { ...auth(), Range: "bytes=0-99" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 0-99/${layer().size}`);
    expect((await part.arrayBuffer()).byteLength).toBe(100);
    const upload = await fetch(`${px.url}/v2/busybox/blobs/uploads/`, { method: "POST", headers: auth() });
    expect(upload.status).toBe(202);
    expect(upload.headers.get("location")!.startsWith(`${px.url}/v2/busybox/blobs/uploads/`)).toBe(true);
    const unauth = await fetch(`${px.url}/v2/`);
    expect(unauth.status).toBe(401);
    expect(unauth.headers.get("www-authenticate")).toContain("Basic");
    expect(px.requests().map((q) => [q.method, q.status, q.range ?? null])).toEqual([
      ["HEAD", 200, null],
      ["GET", 206, "bytes=0-99"],
      ["POST", 202, null],
      ["GET", 401, null],
    ]);
  });

  test("status, truncate, corrupt, body and reset faults", async () => {
    const px = await proxy(reg.url, [
      { path: /\/manifests\//, times: 1, kind: "status", status: 503 },
      { path: /\/blobs\//, method: "GET", times: 1, kind: "truncate", afterBytes: 1000 },
      { path: /\/blobs\//, method: "GET", times: 1, kind: "corrupt", offset: 500 },
      { path: /\/manifests\/notjson$/, times: 1, kind: "body", body: "not json", headers: { "content-type": MT.ociManifest } },
      { path: /\/manifests\/reset$/, times: 1, kind: "reset" },
    ]);
    const man = `${px.url}/v2/busybox/manifests/1`;
    expect((await fetch(man, { headers: auth() })).status).toBe(503);
    expect((await fetch(man, { headers: { ...auth(), Accept: MT.ociManifest } })).status).toBe(200);

    const cut = await fetch(`${px.url}${blobPath()}`, { headers: auth() });
    expect(cut.status).toBe(200);
    expect(cut.headers.get("content-length")).toBe(String(layer().size));
    let failed = false;
    try {
      const got = await cut.arrayBuffer();
      failed = got.byteLength < layer().size;
    } catch {
      failed = true;
    }
    expect(failed).toBe(true);

    const bad = new Uint8Array(await (await fetch(`${px.url}${blobPath()}`, { headers: auth() })).arrayBuffer());
    expect(bad.byteLength).toBe(layer().size);
    expect(hex(bad)).not.toBe(layer().digest);
    const good = new Uint8Array(await (await fetch(`${px.url}${blobPath()}`, { headers: auth() })).arrayBuffer());
    expect(hex(good)).toBe(layer().digest);

    expect(await (await fetch(`${px.url}/v2/busybox/manifests/notjson`, { headers: auth() })).text()).toBe("not json");
    // keepalive off: on a reused connection a client may quietly retry a reset request.
    await expect(fetch(`${px.url}/v2/busybox/manifests/reset`, { headers: auth(), keepalive: false })).rejects.toThrow();

    const faults = px.requests().map((q) => q.fault ?? null);
    expect(faults).toEqual(["status", null, "truncate", "corrupt", null, "body", "reset"]);
    expect(px.requests()[2]!.bytes).toBe(1000);
  });

  test("blob redirects to a second host that serves storage without credentials", async () => {
    const store = await proxy(reg.url, [], { blobRoot: reg.storageDir });
    const front = await proxy(reg.url, [], { redirectBlobsTo: store });
    const r = await fetch(`${front.url}${blobPath()}`, { headers: auth(), redirect: "manual" });
    expect(r.status).toBe(307);
    expect(r.headers.get("location")).toBe(`${store.url}${blobPath()}`);
    expect(front.requests()[0]!.location).toBe(`${store.url}${blobPath()}`);

    // A real client: skopeo pulls the image through the front proxy, blobs from the store.
    const out = await skopeoPull(front.host, reg.creds!, "pulled-redirect");
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    const stored = store.requests().filter((q) => q.method === "GET" && q.status === 200);
    expect(stored.map((q) => q.path)).toContain(blobPath());
    // Go's client (skopeo) drops Authorization on a redirect to another host:port.
    expect(stored.every((q) => q.authorization === false)).toBe(true);
    const ranged = await fetch(`${store.url}${blobPath()}`, { headers: { Range: "bytes=10-" } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-range")).toBe(`bytes 10-${layer().size - 1}/${layer().size}`);
  });

  test("skopeo sees a truncated blob as an unexpected EOF", async () => {
    const px = await proxy(reg.url, [{ path: /\/blobs\/sha256:/, method: "GET", times: 1, kind: "truncate", afterBytes: 5000 }]);
    const out = await skopeoPull(px.host, reg.creds!, "pulled-truncated");
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain("unexpected EOF");
    expect(px.requests().find((q) => q.fault === "truncate")?.bytes).toBe(5000);
  });
});

describe("multi-platform indexes", () => {
  test.each(["oci", "docker"] as const)("pushIndex %s lists the host image and a stub", async (kind) => {
    const reg = await registry({ auth: "token" });
    const pushed = await pushIndex({ registry: reg.host, name: "multi", tag: kind, layoutDir: busybox.dir, kind, creds: reg.creds });
    const r = await registryFetch(`${reg.url}/v2/multi/manifests/${kind}`, { creds: reg.creds, headers: { Accept: pushed.mediaType } });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe(kind === "oci" ? MT.ociIndex : MT.dockerList);
    expect(r.headers.get("docker-content-digest")).toBe(pushed.digest);
    const index = (await r.json()) as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
    expect(index.manifests.map((m) => m.platform.architecture)).toEqual([hostArch(), foreignArch()]);
    expect(index.manifests[0]!.digest).toBe(pushed.hostDigest);
    // skopeo resolves the index to this machine's image.
    const out = await skopeo(["inspect", "--tls-verify=false", "--creds", reg.creds!, `docker://${reg.host}/multi:${kind}`]);
    expect(out.code).toBe(0);
    expect((JSON.parse(out.stdout) as { Architecture: string }).Architecture).toBe(hostArch());
  });
});

describe("archives", () => {
  test("saveArchive writes a docker-archive (manifest.json) skopeo reads back", async () => {
    // rich has a zstd layer, which docker-archive cannot hold: saveArchive recompresses it.
    const out = await saveArchive(rich.dir, join(work, "rich-docker.tar"), "busybox:saved");
    const names = tarList(out);
    expect(names).toContain("manifest.json");
    const manifest = JSON.parse(Bun.spawnSync(["tar", "-xOf", out, "manifest.json"]).stdout.toString()) as Array<{
      RepoTags: string[];
      Layers: string[];
    }>;
    expect(manifest[0]!.RepoTags).toEqual(["busybox:saved"]);
    expect(manifest[0]!.Layers).toHaveLength(rich.layers.length);
    const back = await skopeo(["inspect", `docker-archive:${out}`]);
    expect(back.code).toBe(0);
    // docker-archive layers are plain tars, named by their diff_id.
    expect((JSON.parse(back.stdout) as { Layers: string[] }).Layers).toEqual(rich.configJson.rootfs.diff_ids);
  });

  test("ociArchive writes Docker 25's layout with manifest.json and plain layers", async () => {
    const out = ociArchive(rich.dir, join(work, "rich-oci.tar"), { ref: "rich:25" });
    const names = tarList(out);
    expect(names).toEqual(expect.arrayContaining(["index.json", "oci-layout", "manifest.json", "repositories"]));
    const back = await skopeo(["inspect", "--raw", `oci-archive:${out}`]);
    expect(back.code).toBe(0);
    const m = JSON.parse(back.stdout) as { layers: Array<{ mediaType: string }> };
    expect(m.layers.every((l) => l.mediaType === MT.ociLayerTar)).toBe(true);
  });

  test("legacyArchive writes repositories and <id>/{json,layer.tar,VERSION}", () => {
    const out = join(work, "bb-legacy.tar");
    const { ids } = legacyArchive(busybox.dir, out, "busybox:legacy");
    const names = tarList(out);
    expect(names).toContain("repositories");
    expect(names).not.toContain("manifest.json");
    for (const f of ["json", "layer.tar", "VERSION"]) expect(names).toContain(`${ids[0]}/${f}`);
    const stage = join(work, "legacy-x");
    Bun.spawnSync(["mkdir", "-p", stage]);
    Bun.spawnSync(["tar", "-xf", out, "-C", stage]);
    expect(hex(readFileSync(join(stage, ids[0]!, "layer.tar")))).toBe(busybox.configJson.rootfs.diff_ids[0]!);
    expect(JSON.parse(readFileSync(join(stage, "repositories"), "utf8"))).toEqual({ busybox: { legacy: ids[0] } });
  });
});

describe("reference extraction", () => {
  test("umoci unpacks rich with whiteouts, opaque dir and every entry kind", async () => {
    const rootfs = await umociUnpack(rich.dir, "latest", join(work, "umoci-rich"));
    const tree = treeManifest(rootfs);
    const at = (p: string) => tree.find((e) => e.path === p);
    expect(at(RICH.whitedOut)).toBeUndefined();
    expect(at(RICH.kept)?.type).toBe("file");
    expect(at(RICH.whitedOutDir)).toBeUndefined();
    for (const p of RICH.opaqueOld) expect(at(p)).toBeUndefined();
    expect(at("/opt/opq/sub")).toBeUndefined();
    expect(at(RICH.opaqueNew)?.type).toBe("file");
    expect(tree.some((e) => e.path.includes(".wh."))).toBe(false);
    expect(at(RICH.replaced)?.sha256).toBe(sha256(RICH.replacedContent));
    expect(at(RICH.setuid)?.mode).toBe(0o4755);
    expect(at(RICH.setgid)?.mode).toBe(0o2755);
    expect(at(RICH.owned)).toMatchObject({ uid: 1000, gid: 1000, mode: 0o640 });
    expect(at("/work")).toMatchObject({ type: "dir", uid: 1000, gid: 1000 });
    expect(at("/tmp")?.mode).toBe(0o1777);
    const group = RICH.hardlinks.map((p) => at(p)?.hardlinkGroup);
    expect(group[0]).toBeDefined();
    expect(new Set(group).size).toBe(1);
    for (const [p, target] of Object.entries(RICH.symlinks)) expect(at(p)).toMatchObject({ type: "symlink", linkTarget: target });
    expect(at(RICH.longName)?.type).toBe("file");
    expect(at(RICH.deepFile)?.type).toBe("file");
    expect(RICH.deepFile.length).toBeGreaterThan(255);
    expect(at(RICH.emptyDir)?.type).toBe("dir");
    expect(at(RICH.fifo)?.type).toBe("fifo");
    expect(at(RICH.userXattrFile)?.xattrs?.[RICH.userXattr.name]).toBe(Buffer.from(RICH.userXattr.value).toString("base64"));
    if (isRoot) {
      expect(at(RICH.charDev)).toMatchObject({ type: "char", rdev: { major: 1, minor: 3 } });
      expect(Object.keys(at(RICH.capFile)?.xattrs ?? {})).toContain("security.capability");
    }
    expect(at(RICH.zstdMarker)?.type).toBe("file");
    expect(at(RICH.plainMarker)?.type).toBe("file");
    expect(at("/bin/sh")).toMatchObject({ type: "symlink", linkTarget: "busybox" });

    // Two extractions of the same image compare equal entry for entry.
    const again = treeManifest(await umociUnpack(rich.dir, "latest", join(work, "umoci-rich-2")));
    expect(again).toEqual(tree);
  });
});
