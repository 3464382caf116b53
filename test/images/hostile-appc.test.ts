// Appc images through the same extract workers as Docker layers, against hostile servers and
// ACIs: redirects to file:, an ACI whose rootfs is a symlink to a host directory, a manifest
// that is a symlink to /dev/zero, a server that stalls, an image ID that names a path. Each
// is refused with the reason, nothing outside the store changes, no staging is left.
import { afterAll, beforeEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadFlags } from "../../src/config/flags.ts";
import { startImageService, type ImageService } from "../../src/images/service.ts";
import { tempDir } from "../helpers/agent.ts";
import { rejection } from "../helpers/async.ts";
import { snapshot, startHostile, type HostileServer, type Rule } from "../helpers/hostile-registry.ts";
import { hostArch } from "../helpers/images.ts";

const work = tempDir("ucr-hostile-appc-");
const sentinel = join(work, "sentinel");
mkdirSync(sentinel);
writeFileSync(join(sentinel, "secret"), "host secret\n");
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(work, { recursive: true, force: true });
});

let before: string[];
beforeEach(() => {
  before = snapshot(sentinel);
});

/** An ACI (gzipped tar of manifest + rootfs) made with GNU tar from what `fill` stages. */
function aci(name: string, fill: (stage: string) => void): Buffer {
  const stage = join(work, `stage-${name}`);
  mkdirSync(stage);
  fill(stage);
  const file = join(work, `${name}.aci`);
  expect(Bun.spawnSync(["tar", "--numeric-owner", "-C", stage, "-czf", file, "."]).exitCode).toBe(0);
  return readFileSync(file);
}

const manifest = (name: string) => JSON.stringify({ acKind: "ImageManifest", acVersion: "0.8.11", name, labels: [] });

let count = 0;
async function setup(rules: Rule[], args: string[] = []): Promise<{ s: ImageService; server: HostileServer; store: string }> {
  const server = await startHostile({ rules });
  cleanups.push(() => server.stop());
  const store = join(work, `appc-${count++}`);
  const s = startImageService(
    loadFlags(
      [
        `--work_dir=${join(work, `wd-${count}`)}`,
        `--appc_store_dir=${store}`,
        `--appc_simple_discovery_uri_prefix=${server.url}/`,
        ...args,
      ],
      {},
    ).values,
  );
  cleanups.push(() => s.stop());
  return { s, server, store };
}

const path = (name: string) => new RegExp(`/${name}-latest-linux-${hostArch()}\\.aci$`);

async function refused(s: ImageService, store: string, name: string, id?: string): Promise<string> {
  const err = await rejection(s.appc.get(name, [], id));
  expect(snapshot(sentinel)).toEqual(before);
  if (existsSync(join(store, "staging"))) expect(readdirSync(join(store, "staging"))).toEqual([]);
  if (existsSync(join(store, "images"))) expect(readdirSync(join(store, "images"))).toEqual([]);
  return err.message;
}

test("an ACI whose rootfs is a symlink to a host directory is refused", async () => {
  const body = aci("rootfs-link", (stage) => {
    writeFileSync(join(stage, "manifest"), manifest("example.com/evil"));
    symlinkSync(sentinel, join(stage, "rootfs"));
  });
  const { s, store } = await setup([{ path: path("example.com/evil"), kind: "body", body }]);
  expect(await refused(s, store, "example.com/evil")).toMatch(
    /not an ACI \(it needs a 'manifest' file and a 'rootfs\/' directory, not symlinks\)/,
  );
});

test("an ACI whose manifest is a symlink to /dev/zero is refused without reading it", async () => {
  const body = aci("manifest-zero", (stage) => {
    symlinkSync("/dev/zero", join(stage, "manifest"));
    mkdirSync(join(stage, "rootfs"));
  });
  const { s, store } = await setup([{ path: path("example.com/zero"), kind: "body", body }]);
  expect(await refused(s, store, "example.com/zero")).toMatch(/not an ACI/);
});

test("a redirect to file: is refused, naming the scheme", async () => {
  const { s, store } = await setup([{ path: path("example.com/file"), kind: "redirect", location: `file://${sentinel}/secret` }]);
  expect(await refused(s, store, "example.com/file")).toMatch(/refusing a redirect to scheme 'file'; ucr follows only http and https/);
});

test("a server that sends nothing is given up on after --fetcher_stall_timeout", async () => {
  const { s, store } = await setup([{ path: path("example.com/slow"), kind: "silent" }], ["--fetcher_stall_timeout=1secs"]);
  expect(await refused(s, store, "example.com/slow")).toMatch(/stalled: less than 1 byte\/s for 1secs \(--fetcher_stall_timeout\)/);
});

test("an image ID that is not sha512-<hex> is refused before it names a path", async () => {
  const { s, store, server } = await setup([]);
  expect(await refused(s, store, "example.com/app", "../../../etc")).toContain(
    "'../../../etc' is not an image ID (sha512-<128 hex digits>)",
  );
  expect(server.requests()).toEqual([]);
});

test("a good ACI still comes through the workers, stored by its sha512", async () => {
  const body = aci("good", (stage) => {
    writeFileSync(join(stage, "manifest"), manifest("example.com/good"));
    mkdirSync(join(stage, "rootfs/etc"), { recursive: true });
    writeFileSync(join(stage, "rootfs/etc/hello"), "hi\n");
  });
  const { s, store } = await setup([{ path: path("example.com/good"), kind: "body", body }]);
  const image = await s.appc.get("example.com/good", []);
  expect(image.id).toMatch(/^sha512-[0-9a-f]{128}$/);
  const tar = Bun.gunzipSync(new Uint8Array(body));
  expect(image.id).toBe(`sha512-${new Bun.CryptoHasher("sha512").update(tar).digest("hex")}`);
  expect(readdirSync(join(store, "images"))).toEqual([image.id]);
  expect(readdirSync(join(store, "staging"))).toEqual([]);
});
