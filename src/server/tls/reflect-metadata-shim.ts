/**
 * The part of the `reflect-metadata` polyfill that @peculiar/x509's
 * dependency tsyringe requires to load (it throws without Reflect.getMetadata).
 * The package itself is not among our dependencies; this is the documented
 * metadata API over a WeakMap, installed only when absent, and imported only
 * by the server's TLS module before it loads the library.
 */
type MetadataKey = unknown;
type Target = object;
type PropertyKey = string | symbol | undefined;

const store = new WeakMap<Target, Map<PropertyKey, Map<MetadataKey, unknown>>>();

function ownMap(target: Target, property: PropertyKey, create: boolean): Map<MetadataKey, unknown> | undefined {
  let byProperty = store.get(target);
  if (byProperty === undefined) {
    if (!create) return undefined;
    byProperty = new Map();
    store.set(target, byProperty);
  }
  let map = byProperty.get(property);
  if (map === undefined && create) {
    map = new Map();
    byProperty.set(property, map);
  }
  return map;
}

const api = {
  defineMetadata(key: MetadataKey, value: unknown, target: Target, property?: PropertyKey): void {
    ownMap(target, property, true)?.set(key, value);
  },
  hasOwnMetadata(key: MetadataKey, target: Target, property?: PropertyKey): boolean {
    return ownMap(target, property, false)?.has(key) ?? false;
  },
  getOwnMetadata(key: MetadataKey, target: Target, property?: PropertyKey): unknown {
    return ownMap(target, property, false)?.get(key);
  },
  hasMetadata(key: MetadataKey, target: Target, property?: PropertyKey): boolean {
    for (let at: Target | null = target; at !== null; at = Object.getPrototypeOf(at) as Target | null) if (api.hasOwnMetadata(key, at, property)) return true;
    return false;
  },
  getMetadata(key: MetadataKey, target: Target, property?: PropertyKey): unknown {
    for (let at: Target | null = target; at !== null; at = Object.getPrototypeOf(at) as Target | null) if (api.hasOwnMetadata(key, at, property)) return api.getOwnMetadata(key, at, property);
    return undefined;
  },
  metadata(key: MetadataKey, value: unknown) {
    return (target: Target, property?: PropertyKey): void => api.defineMetadata(key, value, target, property);
  },
};

const reflect = Reflect as unknown as Record<string, unknown>;
if (typeof reflect.getMetadata !== 'function') for (const [name, fn] of Object.entries(api)) reflect[name] = fn;

export {};
