// Builds real test images as OCI image layouts (GNU tar layers, gzip/zstd/plain), malicious
// and corrupt variants, pushes them with skopeo, and turns them into the archive formats.
// One module per job under images/; this one gathers them, so tests import from one place.
export * from "./images/basics.ts";
export * from "./images/layout.ts";
export * from "./images/layers.ts";
export * from "./images/bad-layers.ts";
export * from "./images/corrupt.ts";
export * from "./images/push.ts";
export * from "./images/archives.ts";
export * from "./images/trees.ts";
