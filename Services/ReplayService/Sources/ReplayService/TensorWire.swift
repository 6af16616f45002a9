import Foundation
import GRPCCore
import ReplayServiceProto
import ReplayStorage
import TensorCore

/// Conversions between `TensorCore` tensors and the wire format (`Loom_Replay_TensorData`).
extension DType {
    /// The protobuf enum value of this dtype.
    public var wire: Loom_Replay_DType {
        switch self {
        case .float32: return .float32
        case .float64: return .float64
        case .float16: return .float16
        case .bfloat16: return .bfloat16
        case .int32: return .int32
        case .int64: return .int64
        case .uint8: return .uint8
        case .bool: return .bool
        }
    }

    /// The dtype of a protobuf enum value; throws `.invalidArgument` for an unknown or
    /// unspecified value.
    public init(wire: Loom_Replay_DType, what: @autoclosure () -> String) throws(ReplayError) {
        switch wire {
        case .float32: self = .float32
        case .float64: self = .float64
        case .float16: self = .float16
        case .bfloat16: self = .bfloat16
        case .int32: self = .int32
        case .int64: self = .int64
        case .uint8: self = .uint8
        case .bool: self = .bool
        default:
            throw ReplayError(.invalidArgument,
                              "\(what()): dtype \(wire) is not one of float32, float64, float16, bfloat16, int32, int64, uint8, bool")
        }
    }
}

extension Loom_Replay_TensorData {
    /// The wire form of `tensor`: dtype, shape and its dense little-endian bytes. Over
    /// `adoptLimit` bytes of a contiguous tensor, `data` is a view of the tensor's storage
    /// (its deallocator keeps a copy of the tensor, so a later write to the caller's tensor
    /// copies the storage first and the view never changes); smaller or strided tensors are
    /// copied. Do not mutate such a `data` in place.
    public init(_ tensor: Tensor) {
        self.init()
        dtype = tensor.dtype.wire
        shape = tensor.shape.map(Int64.init)
        if tensor.isContiguous && tensor.count * tensor.dtype.byteSize > Self.adoptLimit {
            let keep = tensor
            data = tensor.withRawBytes { raw in
                Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: raw.baseAddress!), count: raw.count,
                     deallocator: .custom { _, _ in withExtendedLifetime(keep) {} })
            }
        } else {
            data = tensor.withRawBytes { Data($0) }
        }
    }

    /// The tensor this message describes; throws `.invalidArgument` naming `what` when the
    /// dtype is unknown, a dimension is negative, or the byte count does not match the shape.
    ///
    /// Over `adoptLimit` bytes (frames) the tensor adopts the message's `Data` instead of
    /// copying it (`Tensor(adopting:)`, the `Data` kept alive by the tensor's storage): the
    /// decoder already made that `Data` a copy of exactly this field's bytes, so nothing else
    /// is kept alive. The tensor is read-only (a mutation copies it first). Smaller or
    /// misaligned bytes are copied.
    public func tensor(_ what: @autoclosure () -> String) throws(ReplayError) -> Tensor {
        let dt = try DType(wire: dtype, what: what())
        let dims = try checkedShape(shape, dtype: dt, byteCount: data.count, what: what())
        if data.count > Self.adoptLimit {
            // Data over 14 bytes lives in a heap storage object that does not move while a
            // copy of the Data holding it lives unmutated (smaller Data is stored inline and
            // `withUnsafeBytes` hands out a temporary copy: never adopted).
            let owner = AdoptedData(data)
            let adopted: Tensor? = owner.data.withUnsafeBytes { raw in
                guard let base = raw.baseAddress, Tensor.canAdopt(base, dtype: dt) else { return nil }
                return Tensor(adopting: raw, shape: dims, dtype: dt, owner: owner)
            }
            if let adopted { return adopted }
        }
        return Tensor(rawBytes: data, shape: dims, dtype: dt)
    }

    /// Largest `data` (bytes) `tensor(_:)` copies rather than adopts.
    static let adoptLimit = 4096
}

/// Keeps a decoded message's `Data` alive for the tensor adopting its bytes.
final class AdoptedData: Sendable {
    let data: Data
    init(_ data: Data) { self.data = data }
}

extension Loom_Replay_SampleInfo {
    /// The wire form of `info`.
    public init(_ info: SampleInfo) {
        self.init()
        key = info.key
        probability = info.probability
        tableSize = Int64(info.tableSize)
        priority = info.priority
        timesSampled = Int64(info.timesSampled)
    }
}

extension SampleInfo {
    /// The sample info carried by a wire message.
    public init(wire: Loom_Replay_SampleInfo) {
        self.init(key: wire.key, probability: wire.probability, tableSize: Int(wire.tableSize),
                  priority: wire.priority, timesSampled: Int(wire.timesSampled))
    }
}

extension Loom_Replay_TableInfo {
    /// The wire form of a table's info (its config as JSON).
    public init(_ info: TableInfo) {
        self.init()
        name = info.config.name
        size = Int64(info.size)
        maxSize = Int64(info.config.maxSize)
        inserts = Int64(info.counters.inserts)
        samples = Int64(info.counters.samples)
        deletes = Int64(info.counters.deletes)
        uniqueChunks = Int64(info.uniqueChunks)
        chunkBytes = Int64(info.chunkBytes)
        waitingInserts = Int64(info.waitingInserts)
        waitingSamples = Int64(info.waitingSamples)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        configJson = (try? encoder.encode(info.config)).flatMap { String(data: $0, encoding: .utf8) } ?? ""
    }
}

/// A timeout in milliseconds from the wire (0 = wait forever); throws for negative values.
/// How long a rate-limiter wait may take: the request's `timeout_ms` capped by what is left
/// of the call's gRPC deadline (`deadline`, nil = none); nil waits forever. Throws
/// `.timeout` when the deadline has already passed.
func waitLimit(_ timeout: Duration?, deadline: ContinuousClock.Instant?, _ what: @autoclosure () -> String) throws(ReplayError) -> Duration? {
    guard let deadline else { return timeout }
    let left = deadline - ContinuousClock.now
    guard left > .zero else { throw ReplayError(.timeout, "\(what()): the call's deadline passed") }
    return timeout.map { Swift.min($0, left) } ?? left
}

/// The deadline a call's `grpc-timeout` header sets, counted from now (nil without one, or
/// when it is malformed: gRPC's own executor rejects those). Format: 1-8 digits and a unit,
/// H, M, S, m (ms), u (µs) or n (ns).
public func callDeadline(_ metadata: Metadata) -> ContinuousClock.Instant? {
    guard let value = metadata[stringValues: "grpc-timeout"].first(where: { _ in true }),
          let unit = value.last, value.count >= 2, value.count <= 9,
          let amount = Int64(value.dropLast()), amount >= 0 else { return nil }
    let d: Duration
    switch unit {
    case "H": d = .seconds(amount * 3600)
    case "M": d = .seconds(amount * 60)
    case "S": d = .seconds(amount)
    case "m": d = .milliseconds(amount)
    case "u": d = .microseconds(amount)
    case "n": d = .nanoseconds(amount)
    default: return nil
    }
    return ContinuousClock.now + d
}

func wireTimeout(_ ms: Int64, _ what: String) throws(ReplayError) -> Duration? {
    guard ms >= 0 else { throw ReplayError(.invalidArgument, "\(what): timeout_ms \(ms) must be >= 0 (0 waits forever)") }
    return ms == 0 ? nil : .milliseconds(ms)
}
