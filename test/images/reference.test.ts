// Image names parsed and normalised as `docker pull` does, and refused with a reason.
import { expect, test } from "bun:test";
import { canonical, familiar, parseReference, remotePath, sameImage } from "../../src/images/reference.ts";

const D = `sha256:${"a".repeat(64)}`;

test("normalisation: docker.io, library/, latest", () => {
  const cases: Array<[string, string]> = [
    ["alpine", "docker.io/library/alpine:latest"],
    ["alpine:3.19", "docker.io/library/alpine:3.19"],
    ["library/alpine", "docker.io/library/alpine:latest"],
    ["gilbert/inky", "docker.io/gilbert/inky:latest"],
    ["docker.io/alpine", "docker.io/library/alpine:latest"],
    ["index.docker.io/library/alpine:1", "docker.io/library/alpine:1"],
    ["localhost/foo", "localhost/foo:latest"],
    ["localhost:5000/foo:1", "localhost:5000/foo:1"],
    ["127.0.0.1:5000/a/b/c:x", "127.0.0.1:5000/a/b/c:x"],
    ["reg.io/app:1", "reg.io/app:1"],
    [`alpine@${D}`, `docker.io/library/alpine@${D}`],
    [`alpine:3@${D}`, `docker.io/library/alpine@${D}`],
    ["[::1]:5000/img:t", "[::1]:5000/img:t"],
    ["a_b/c__d/e-f.g:v1.0-rc_1", "docker.io/a_b/c__d/e-f.g:v1.0-rc_1"],
  ];
  for (const [input, want] of cases) expect({ input, got: canonical(parseReference(input)) }).toEqual({ input, got: want });
});

test("the registry part is a host only with '.', ':' or localhost (or uppercase)", () => {
  expect(parseReference("foo/bar").explicitDomain).toBe(false);
  expect(parseReference("foo.com/bar").domain).toBe("foo.com");
  expect(parseReference("foo:5000/bar").domain).toBe("foo:5000");
  expect(parseReference("Foo/bar").domain).toBe("Foo");
  expect(parseReference("localhost/bar").explicitDomain).toBe(true);
});

test("familiar names, and which names are the same image", () => {
  expect(familiar(parseReference("docker.io/library/mysql:latest"))).toBe("mysql:latest");
  expect(familiar(parseReference("gilbert/inky"))).toBe("gilbert/inky:latest");
  expect(sameImage("mysql", "docker.io/library/mysql:latest")).toBe(true);
  expect(sameImage("alpine", "alpine:latest")).toBe(true);
  expect(sameImage("alpine", "alpine:3")).toBe(false);
});

test("Mesos adds library/ only on Docker Hub", () => {
  expect(remotePath(parseReference("alpine"), true)).toBe("library/alpine");
  expect(remotePath(parseReference("alpine"), false)).toBe("alpine");
  expect(remotePath(parseReference("library/alpine"), false)).toBe("library/alpine");
});

test("invalid names are refused with the reason", () => {
  const cases: Array<[string, RegExp]> = [
    ["", /it is empty/],
    ["Alpine", /repository name must be lowercase/],
    ["reg.io/Alpine:1", /repository name must be lowercase/],
    ["alpine:", /tag '' is invalid/],
    ["alpine:-x", /tag '-x' is invalid/],
    [`alpine:${"t".repeat(129)}`, /tag '.*' is invalid/],
    ["alpine@sha256:abc", /malformed sha256/],
    [`alpine@md5:${"a".repeat(32)}`, /unsupported digest algorithm 'md5'/],
    ["alpine@x@y", /more than one '@'/],
    ["a//b", /empty path component/],
    ["a/-b", /path component '-b' is invalid/],
    ["a/b_", /path component 'b_' is invalid/],
    ["reg.io:99999/a", /port '99999' is not a port number/],
    ["re_g.io/a", /registry host 're_g.io' is not a valid host name/],
    ["reg.io/", /no repository name after the registry/],
    [":tag", /no repository name/],
    [" alpine", /leading or trailing spaces/],
    [`a/${"b".repeat(260)}`, /at most 255/],
  ];
  for (const [input, pattern] of cases) {
    expect(() => parseReference(input)).toThrow(pattern);
    expect(() => parseReference(input)).toThrow(
      new RegExp(`invalid image reference '${input.slice(0, 10).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`),
    );
  }
});
