/// Float16 and BFloat16 storage formats and their conversion to and from Float32.
///
/// Compute happens in Float32 (as PyTorch's CPU kernels do for half types); these
/// types are storage. Conversions round to nearest even and keep NaN and ±Inf.

/// The bfloat16 format: Float32's sign and 8-bit exponent with a 7-bit mantissa.
public struct BFloat16: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var bitPattern: UInt16
    @inlinable public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    /// Rounds a Float32 to the nearest bfloat16 (ties to even); NaN stays a quiet NaN.
    @inlinable public init(_ value: Float) {
        let bits = value.bitPattern
        if value.isNaN {
            bitPattern = UInt16(truncatingIfNeeded: bits >> 16) | 0x0040
            return
        }
        let lsb = (bits >> 16) & 1
        let rounded = bits &+ 0x7FFF &+ lsb
        bitPattern = UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// The exact Float32 value of this bfloat16.
    @inlinable public var floatValue: Float { Float(bitPattern: UInt32(bitPattern) << 16) }
    public var description: String { floatValue.description }
}

/// Converts `count` Float32 values to Float16 (round to nearest even).
@inlinable
public func convertFloatToHalf(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float16>, count: Int) {
    for i in 0..<count { dst[i] = Float16(src[i]) }
}

/// Converts `count` Float16 values to Float32 (exact).
@inlinable
public func convertHalfToFloat(_ src: UnsafePointer<Float16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { dst[i] = Float(src[i]) }
}

/// Converts `count` Float32 values to BFloat16 (round to nearest even).
@inlinable
public func convertFloatToBFloat16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<BFloat16>, count: Int) {
    for i in 0..<count { dst[i] = BFloat16(src[i]) }
}

/// Converts `count` BFloat16 values to Float32 (exact).
@inlinable
public func convertBFloat16ToFloat(_ src: UnsafePointer<BFloat16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { dst[i] = src[i].floatValue }
}
