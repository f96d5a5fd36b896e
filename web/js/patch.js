// @ts-check
/**
 * JSON Merge Patch (RFC 7396): objects merge key by key, null deletes, anything else replaces.
 * Mirrors apply() in server/streams/mergepatch.py; the same golden cases test both.
 * @param {any} target
 * @param {any} patch
 * @returns {any} a new value; `target` is not modified
 */
export function mergePatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const result = target !== null && typeof target === "object" && !Array.isArray(target) ? { ...target } : {};
  for (const key of Object.keys(patch)) {
    const value = patch[key];
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}
