import TensorKernels

/// Element types a `Tensor` can hold.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible, Codable {
    case float32, float64, float16, bfloat16, int32, int64, uint8, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16: return 2
        case .uint8, .bool: return 1
        }
    }

    /// Float32, Float64, Float16 and BFloat16.
    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float64, .float16, .bfloat16: return true
        default: return false
        }
    }

    /// Float16 and BFloat16: storage types whose arithmetic runs in Float32.
    public var isReducedPrecision: Bool { self == .float16 || self == .bfloat16 }

    public var description: String { rawValue }
}

/// A Swift type that is the element type of one `DType`.
public protocol TensorElement: Sendable {
    static var dtype: DType { get }
    /// Converts from Double (rounding, truncating toward zero for integers, as `Tensor.to` does).
    init(loomDouble: Double)
    /// The value as a Double (exact for every type except Int64 beyond 2^53).
    var loomDouble: Double { get }
}

extension Float: TensorElement {
    public static var dtype: DType { .float32 }
    @inlinable public init(loomDouble: Double) { self = Float(loomDouble) }
    @inlinable public var loomDouble: Double { Double(self) }
}
extension Double: TensorElement {
    public static var dtype: DType { .float64 }
    @inlinable public init(loomDouble: Double) { self = loomDouble }
    @inlinable public var loomDouble: Double { self }
}
extension Float16: TensorElement {
    public static var dtype: DType { .float16 }
    @inlinable public init(loomDouble: Double) { self = Float16(Float(loomDouble)) }
    @inlinable public var loomDouble: Double { Double(Float(self)) }
}
extension BFloat16: TensorElement {
    public static var dtype: DType { .bfloat16 }
    @inlinable public init(loomDouble: Double) { self = BFloat16(Float(loomDouble)) }
    @inlinable public var loomDouble: Double { Double(floatValue) }
}
extension Int32: TensorElement {
    public static var dtype: DType { .int32 }
    @inlinable public init(loomDouble: Double) { self = loomDouble.isFinite ? Int32(clamping: Int64(loomDouble.rounded(.towardZero).clampedToInt64)) : 0 }
    @inlinable public var loomDouble: Double { Double(self) }
}
extension Int64: TensorElement {
    public static var dtype: DType { .int64 }
    @inlinable public init(loomDouble: Double) { self = loomDouble.isFinite ? Int64(loomDouble.rounded(.towardZero).clampedToInt64) : 0 }
    @inlinable public var loomDouble: Double { Double(self) }
}
extension UInt8: TensorElement {
    public static var dtype: DType { .uint8 }
    @inlinable public init(loomDouble: Double) { self = loomDouble.isFinite ? UInt8(truncatingIfNeeded: Int64(loomDouble.rounded(.towardZero).clampedToInt64)) : 0 }
    @inlinable public var loomDouble: Double { Double(self) }
}
extension Bool: TensorElement {
    public static var dtype: DType { .bool }
    @inlinable public init(loomDouble: Double) { self = loomDouble != 0 }
    @inlinable public var loomDouble: Double { self ? 1 : 0 }
}

extension Double {
    @usableFromInline var clampedToInt64: Double {
        Swift.min(Swift.max(self, -9.2233720368547748e18), 9.2233720368547748e18 - 1024)
    }
}

/// Float32 and Float64: the types every arithmetic kernel is specialised for.
public protocol KernelFloat: TensorElement, BinaryFloatingPoint, ElementaryMath, GemmScalar, ReduceScalar {}
extension Float: KernelFloat {}
extension Double: KernelFloat {}
