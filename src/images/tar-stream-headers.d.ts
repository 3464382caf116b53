// tar-stream does not export its header codec; unpack.ts replaces decodePax in it (see there).
declare module "*/tar-stream/headers.js" {
  const headers: { decodePax: (buf: Buffer) => Record<string, string> };
  export default headers;
}
