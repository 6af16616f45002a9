import Foundation
import TensorCore

/// Writing and reading checkpoint directories.
///
/// Layout: `<root>/checkpoint-<10-digit number>/` holding `tables.json` (configs, rate
/// limiter counters, generator state), `items.safetensors` (keys, priorities, times
/// sampled, insertion order, step ranges, chunk references, selector order),
/// `chunks.safetensors` (each distinct chunk once, so shared chunks stay shared) and a
/// `DONE` marker written last. A checkpoint is built in a hidden temporary directory
/// (every file written to a temp name, fsynced and renamed), then the directory is fsynced
/// and renamed into place, and the root fsynced: a crash or error at any point leaves
/// earlier checkpoints intact, and a directory without `DONE` is never loaded.
public enum ReplayCheckpoint {
    /// Name of the completion marker file.
    public static let doneMarker = "DONE"
    static let prefix = "checkpoint-"

    /// Writes `tables` into a new checkpoint directory under `root` (created if missing)
    /// and returns its path. Each table's state is copied under its lock, so each table is
    /// consistent; tables are not frozen together.
    @discardableResult
    public static func write(_ tables: [ReplayTable], root: String) throws(ReplayError) -> String {
        try write(tables.map { $0.state() }, root: root, failAfterFiles: nil)
    }

    /// `write` with fault injection for tests: throws after writing `failAfterFiles` files.
    static func write(_ states: [TableState], root: String, failAfterFiles: Int?) throws(ReplayError) -> String {
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        } catch {
            throw ReplayError(.checkpoint, "checkpoint root \(root): cannot create directory: \(error)")
        }
        let number = (checkpointNumbers(in: root).max() ?? 0) + 1
        let name = prefix + String(repeating: "0", count: max(0, 10 - String(number).count)) + String(number)
        let final = root + "/" + name
        let tmp = root + "/." + name + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        do {
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        } catch {
            throw ReplayError(.checkpoint, "checkpoint \(final): cannot create temporary directory \(tmp): \(error)")
        }
        var written = 0
        func fileWritten() throws(ReplayError) {
            written += 1
            if let n = failAfterFiles, written >= n {
                throw ReplayError(.checkpoint, "checkpoint \(final): injected failure after \(written) files")
            }
        }
        do throws(ReplayError) {
            // Chunks: each distinct object once.
            var index: [ObjectIdentifier: Int] = [:]
            var chunkKeys: [UInt64] = []
            var chunkColumns: [Int64] = []
            var tensors: [String: Tensor] = [:]
            var itemTensors: [String: Tensor] = [:]
            var tableRecords: [CheckpointManifest.TableRecord] = []
            for (t, s) in states.enumerated() {
                let n = s.records.count
                var keys: [UInt64] = [], priorities: [Double] = [], times: [Int64] = [], sequences: [Int64] = []
                var offsets: [Int64] = [], lengths: [Int64] = [], chunkCounts: [Int64] = [], chunkIndices: [Int64] = []
                keys.reserveCapacity(n); priorities.reserveCapacity(n); times.reserveCapacity(n); sequences.reserveCapacity(n)
                offsets.reserveCapacity(n); lengths.reserveCapacity(n); chunkCounts.reserveCapacity(n)
                for r in s.records {
                    keys.append(r.item.key)
                    priorities.append(r.item.priority)
                    times.append(Int64(r.timesSampled))
                    sequences.append(Int64(bitPattern: r.sequence))
                    offsets.append(Int64(r.item.offset))
                    lengths.append(Int64(r.item.length))
                    chunkCounts.append(Int64(r.item.chunks.count))
                    for c in r.item.chunks {
                        let id = ObjectIdentifier(c)
                        if let i = index[id] { chunkIndices.append(Int64(i)); continue }
                        let i = chunkKeys.count
                        index[id] = i
                        chunkKeys.append(c.key)
                        chunkColumns.append(Int64(c.columns.count))
                        for (j, column) in c.columns.enumerated() { tensors["\(i).\(j)"] = column }
                        chunkIndices.append(Int64(i))
                    }
                }
                itemTensors["\(t).key"] = ItemColumns.keys(keys)
                itemTensors["\(t).priority"] = Tensor(priorities)
                itemTensors["\(t).timesSampled"] = ItemColumns.int64(times)
                itemTensors["\(t).sequence"] = ItemColumns.int64(sequences)
                itemTensors["\(t).offset"] = ItemColumns.int64(offsets)
                itemTensors["\(t).length"] = ItemColumns.int64(lengths)
                itemTensors["\(t).chunkCount"] = ItemColumns.int64(chunkCounts)
                itemTensors["\(t).chunkIndex"] = ItemColumns.int64(chunkIndices)
                itemTensors["\(t).samplerOrder"] = ItemColumns.keys(s.samplerOrder)
                itemTensors["\(t).removerOrder"] = ItemColumns.keys(s.removerOrder)
                tableRecords.append(.init(config: s.config, counters: s.counters, rng: s.rng, nextSequence: s.nextSequence,
                                          itemCount: n, chunkReferences: chunkIndices.count))
            }
            itemTensors["chunkKey"] = ItemColumns.keys(chunkKeys)
            itemTensors["chunkColumns"] = ItemColumns.int64(chunkColumns)
            let manifest = CheckpointManifest(formatVersion: CheckpointManifest.currentVersion, tables: tableRecords,
                                              chunkCount: chunkKeys.count)
            let json: Data
            do {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys]
                json = try enc.encode(manifest)
            } catch {
                throw ReplayError(.checkpoint, "checkpoint \(final): cannot encode the manifest: \(error)")
            }
            func saveFile(_ body: () throws(SafeTensors.FormatError) -> Void) throws(ReplayError) {
                do throws(SafeTensors.FormatError) {
                    try body()
                } catch {
                    throw ReplayError(.checkpoint, "checkpoint \(final): \(error)")
                }
                try fileWritten()
            }
            try saveFile { () throws(SafeTensors.FormatError) in
                try SafeTensors.save(tensors, to: tmp + "/chunks.safetensors", metadata: ["format": "loom-replay-chunks-1"])
            }
            try saveFile { () throws(SafeTensors.FormatError) in
                try SafeTensors.save(itemTensors, to: tmp + "/items.safetensors", metadata: ["format": "loom-replay-items-1"])
            }
            try saveFile { () throws(SafeTensors.FormatError) in try SafeTensors.writeAtomically(json, to: tmp + "/tables.json") }
            try saveFile { () throws(SafeTensors.FormatError) in
                try SafeTensors.writeAtomically(Data("ok\n".utf8), to: tmp + "/" + doneMarker)
            }
            fsyncDirectory(tmp)
            guard rename(tmp, final) == 0 else {
                throw ReplayError(.checkpoint, "checkpoint \(final): cannot rename \(tmp) into place: \(String(cString: strerror(errno)))")
            }
            fsyncDirectory(root)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
        return final
    }

    /// The newest complete checkpoint under `root` (highest number with a `DONE` marker),
    /// or nil. Incomplete directories are skipped.
    public static func latest(in root: String) -> String? {
        for n in checkpointNumbers(in: root).sorted(by: >) {
            let dir = root + "/" + prefix + String(repeating: "0", count: max(0, 10 - String(n).count)) + String(n)
            if FileManager.default.fileExists(atPath: dir + "/" + doneMarker) { return dir }
        }
        return nil
    }

    static func checkpointNumbers(in root: String) -> [Int] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        return names.compactMap { n in
            guard n.hasPrefix(prefix) else { return nil }
            return Int(n.dropFirst(prefix.count))
        }
    }

    /// Reads the table states of the checkpoint directory `dir`; throws when it has no
    /// `DONE` marker (an interrupted write) or a file is missing or malformed.
    static func read(_ dir: String) throws(ReplayError) -> [TableState] {
        let fm = FileManager.default
        guard fm.fileExists(atPath: dir) else { throw ReplayError(.notFound, "checkpoint \(dir): directory not found") }
        guard fm.fileExists(atPath: dir + "/" + doneMarker) else {
            throw ReplayError(.checkpoint, "checkpoint \(dir): no \(doneMarker) marker (an incomplete or interrupted write); refusing to load it")
        }
        guard let json = fm.contents(atPath: dir + "/tables.json") else {
            throw ReplayError(.checkpoint, "checkpoint \(dir): tables.json is missing or unreadable")
        }
        let manifest: CheckpointManifest
        do {
            manifest = try JSONDecoder().decode(CheckpointManifest.self, from: json)
        } catch {
            throw ReplayError(.checkpoint, "checkpoint \(dir)/tables.json: \(error)")
        }
        guard manifest.formatVersion == CheckpointManifest.currentVersion else {
            throw ReplayError(.checkpoint, "checkpoint \(dir): format version \(manifest.formatVersion), expected \(CheckpointManifest.currentVersion)")
        }
        let tensors: [String: Tensor], columns: [String: Tensor]
        do throws(SafeTensors.FormatError) {
            tensors = try SafeTensors.load(dir + "/chunks.safetensors").tensors
            columns = try SafeTensors.load(dir + "/items.safetensors").tensors
        } catch {
            throw ReplayError(.checkpoint, "checkpoint: \(error)")
        }
        let chunkKeys = try ItemColumns.readInt64(columns, "chunkKey", count: manifest.chunkCount, dir: dir)
        let chunkColumns = try ItemColumns.readInt64(columns, "chunkColumns", count: manifest.chunkCount, dir: dir)
        var chunks: [Chunk] = []
        chunks.reserveCapacity(manifest.chunkCount)
        for (i, key) in chunkKeys.enumerated() {
            var cols: [Tensor] = []
            for j in 0..<Int(chunkColumns[i]) {
                guard let t = tensors["\(i).\(j)"] else {
                    throw ReplayError(.checkpoint, "checkpoint \(dir): chunk \(UInt64(bitPattern: key)) (index \(i)) column \(j) is missing from chunks.safetensors")
                }
                cols.append(t)
            }
            chunks.append(try Chunk(key: UInt64(bitPattern: key), columns: cols))
        }
        var states: [TableState] = []
        for (t, record) in manifest.tables.enumerated() {
            let n = record.itemCount
            func int64(_ name: String, _ count: Int) throws(ReplayError) -> [Int64] {
                try ItemColumns.readInt64(columns, "\(t).\(name)", count: count, dir: dir)
            }
            let keys = try int64("key", n), times = try int64("timesSampled", n), sequences = try int64("sequence", n)
            let offsets = try int64("offset", n), lengths = try int64("length", n), chunkCounts = try int64("chunkCount", n)
            let chunkIndex = try int64("chunkIndex", record.chunkReferences)
            let samplerOrder = try int64("samplerOrder", n), removerOrder = try int64("removerOrder", n)
            let priorities = try ItemColumns.readFloat64(columns, "\(t).priority", count: n, dir: dir)
            guard chunkCounts.reduce(0, +) == Int64(chunkIndex.count) else {
                throw ReplayError(.checkpoint, "checkpoint \(dir): table '\(record.config.name)' items name \(chunkCounts.reduce(0, +)) chunks, \(chunkIndex.count) are stored")
            }
            var records: [ItemRecord] = []
            records.reserveCapacity(n)
            var next = 0
            for i in 0..<n {
                var itemChunks: [Chunk] = []
                itemChunks.reserveCapacity(Int(chunkCounts[i]))
                for _ in 0..<Int(chunkCounts[i]) {
                    let c = Int(chunkIndex[next])
                    next += 1
                    guard c >= 0 && c < chunks.count else {
                        throw ReplayError(.checkpoint, "checkpoint \(dir): table '\(record.config.name)' item \(UInt64(bitPattern: keys[i])) names chunk index \(c), expected 0..<\(chunks.count)")
                    }
                    itemChunks.append(chunks[c])
                }
                let item = ReplayItem(key: UInt64(bitPattern: keys[i]), table: record.config.name, priority: priorities[i],
                                      chunks: itemChunks, offset: Int(offsets[i]), length: Int(lengths[i]))
                records.append(ItemRecord(item: item, timesSampled: Int(times[i]), sequence: UInt64(bitPattern: sequences[i])))
            }
            states.append(TableState(config: record.config, counters: record.counters, rng: record.rng, nextSequence: record.nextSequence,
                                     records: records, samplerOrder: samplerOrder.map { UInt64(bitPattern: $0) },
                                     removerOrder: removerOrder.map { UInt64(bitPattern: $0) }))
        }
        return states
    }

    private static func fsyncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}
