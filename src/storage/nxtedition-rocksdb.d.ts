// The subset of @nxtedition/rocksdb 12.2.12 (a CommonJS abstract-level 1.x store without its own types)
// that src/storage uses. Keys are utf8 strings and values Buffers (the encodings the store is opened with).
declare module '@nxtedition/rocksdb' {
  type RocksBatchOp = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

  interface RocksIteratorOptions {
    gt?: string;
    gte?: string;
    lt?: string;
    lte?: string;
    reverse?: boolean;
    limit?: number;
    keys?: boolean;
    values?: boolean;
  }

  interface RocksIterator {
    /** Up to `size` rows; an empty array at the end. */
    nextv(size: number): Promise<[string, Buffer][]>;
    close(): Promise<void>;
  }

  class RocksLevel {
    constructor(location: string, options?: { keyEncoding?: 'utf8'; valueEncoding?: 'buffer' });
    readonly status: 'opening' | 'open' | 'closing' | 'closed';
    open(options?: {
      createIfMissing?: boolean;
      errorIfExists?: boolean;
      /** Block cache bytes. */
      cacheSize?: number;
      /** 'level' tunes write buffers and levels for memtableMemoryBudget (OptimizeLevelStyleCompaction). */
      compaction?: 'level' | 'universal';
      memtableMemoryBudget?: number;
      /** ZSTD with a trained dictionary when true (the binding's default). */
      compression?: boolean;
    }): Promise<void>;
    close(): Promise<void>;
    /** `sync: true` fsyncs the WAL before the promise settles (the only write path that honours it). */
    batch(ops: RocksBatchOp[], options?: { sync?: boolean }): Promise<void>;
    /** `put` ignores `sync`: use `batch` for durable writes. */
    put(key: string, value: Buffer): Promise<void>;
    getMany(keys: string[]): Promise<(Buffer | undefined)[]>;
    iterator(options?: RocksIteratorOptions): RocksIterator;
    /** Without a limit: one RocksDB DeleteRange over the range (not synced). */
    clear(options: { gte?: string; gt?: string; lt?: string; lte?: string }): Promise<void>;
  }

  const rocksdb: { RocksLevel: typeof RocksLevel };
  export = rocksdb;
}
