// tar-stream does not export its header codec (not in its exports map); tar-reader.ts uses decode.
declare module "*/tar-stream/headers.js" {
  const headers: { decode: unknown };
  export default headers;
}
