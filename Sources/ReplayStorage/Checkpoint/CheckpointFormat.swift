import TensorCore

/// The JSON manifest of a checkpoint directory (`tables.json`): per table its config, rate
/// limiter counters, generator state and item count. Item columns live in
/// `items.safetensors` (see `ItemColumns`), chunk data in `chunks.safetensors` (tensor
/// `"<chunk index>.<column>"`).
struct CheckpointManifest: Codable {
    static let currentVersion = 1
    var formatVersion: Int
    var tables: [TableRecord]
    var chunkCount: Int

    struct TableRecord: Codable {
        var config: TableConfig
        var counters: RateLimiterCounters
        var rng: ReplayRandom
        var nextSequence: UInt64
        var itemCount: Int
        /// Total chunk references of all items.
        var chunkReferences: Int
    }
}

/// Per-table item arrays stored as 1-D tensors in `items.safetensors` (binary, so a
/// million items save and load in a fraction of a second, and priorities keep their
/// exact bits): `<t>.key`, `<t>.priority` (float64), `<t>.timesSampled`, `<t>.sequence`,
/// `<t>.offset`, `<t>.length`, `<t>.chunkCount`, `<t>.chunkIndex` (all chunk indices laid
/// end to end), `<t>.samplerOrder`, `<t>.removerOrder` (int64; keys bit-cast), where `<t>`
/// is the table's index in the manifest; plus `chunkKey` and `chunkColumns` per chunk.
enum ItemColumns {
    static func int64(_ values: [Int64]) -> Tensor { try! Tensor(values, shape: [values.count]) }
    static func keys(_ values: [UInt64]) -> Tensor { int64(values.map { Int64(bitPattern: $0) }) }

    /// Reads tensor `name` as `count` Int64 values, or throws naming the problem.
    static func readInt64(_ tensors: [String: Tensor], _ name: String, count: Int, dir: String) throws(ReplayError) -> [Int64] {
        guard let t = tensors[name] else {
            throw ReplayError(.checkpoint, "checkpoint \(dir): items.safetensors has no tensor '\(name)'")
        }
        guard t.dtype == .int64, t.shape == [count] else {
            throw ReplayError(.checkpoint, "checkpoint \(dir): tensor '\(name)' is \(t.dtype) \(t.shape), expected int64 [\(count)]")
        }
        return t.scalars(as: Int64.self)
    }

    static func readFloat64(_ tensors: [String: Tensor], _ name: String, count: Int, dir: String) throws(ReplayError) -> [Double] {
        guard let t = tensors[name] else {
            throw ReplayError(.checkpoint, "checkpoint \(dir): items.safetensors has no tensor '\(name)'")
        }
        guard t.dtype == .float64, t.shape == [count] else {
            throw ReplayError(.checkpoint, "checkpoint \(dir): tensor '\(name)' is \(t.dtype) \(t.shape), expected float64 [\(count)]")
        }
        return t.scalars(as: Double.self)
    }
}
