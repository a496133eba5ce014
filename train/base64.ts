/**
 * Base64 of bytes (no JSR std available here): for data: URLs in the report.
 *
 * @module
 */

/** Standard base64 with padding. */
export function encodeBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}
