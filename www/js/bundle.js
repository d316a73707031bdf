// Which build of the wasm client this browser runs. A module of one function using
// f32x4.relaxed_madd is valid only where the browser has relaxed SIMD: there the bundle built
// with it (fused multiply-add in the matrix kernels) runs; elsewhere the plain simd128 build of
// the same code. Both share `/pkg/chorus_client.js`.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0,
  97,
  115,
  109,
  1,
  0,
  0,
  0,
  1,
  5,
  1,
  96,
  0,
  1,
  123,
  3,
  2,
  1,
  0,
  10,
  61,
  1,
  59,
  0,
  ...[0, 1, 2].flatMap(() => [253, 12, ...new Array(16).fill(0)]),
  253,
  133,
  2,
  11,
]);

export const BUNDLE = WebAssembly.validate(RELAXED_SIMD_PROBE)
  ? '/pkg/chorus_client_bg.wasm'
  : '/pkg/chorus_client_simd128_bg.wasm';
