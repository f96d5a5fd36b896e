// @ts-check
/**
 * JSON Merge Patch (RFC 7396): objects merge key by key, null deletes, anything else replaces.
 * Mirrors apply() in server/streams/mergepatch.py; the same golden cases test both.
 * Objects are built without a prototype, so an id such as "__proto__" is an ordinary key.
 * @param {any} target
 * @param {any} patch
 * @returns {any} a new value; `target` is not modified
 */
export function mergePatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const result = Object.create(null);
  if (target !== null && typeof target === "object" && !Array.isArray(target)) {
    for (const key of Object.keys(target)) result[key] = target[key];
  }
  for (const key of Object.keys(patch)) {
    const value = patch[key];
    if (value === null) delete result[key];
    else result[key] = mergePatch(Object.hasOwn(result, key) ? result[key] : undefined, value);
  }
  return result;
}
