// A record whose values are made on first read, for tables built at module load that a start mostly never
// reads (the registry's per-command metric handles: ~10 ms of every start). Each value is made once, then
// stored as a plain property; Object.keys/values/entries see every key (reading values makes them).
export const lazyRecord = <K extends string, V>(keys: ReadonlyArray<K>, make: (key: K) => V): Record<K, V> => {
  const record = {} as Record<K, V>
  for (const key of keys) {
    Object.defineProperty(record, key, {
      enumerable: true,
      configurable: true,
      get: () => {
        const value = make(key)
        Object.defineProperty(record, key, { value, enumerable: true, writable: false, configurable: false })
        return value
      }
    })
  }
  return record
}
