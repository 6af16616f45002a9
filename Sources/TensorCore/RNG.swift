import Synchronization

/// The complete state of a `Generator`: save it to resume a random stream exactly.
public struct RNGState: Sendable, Equatable, Codable {
    public var s: [UInt64]
    /// A cached second normal deviate from Box–Muller, if any.
    public var spareNormal: Double?
}

/// A seeded, reproducible random generator (xoshiro256**, seeded by SplitMix64).
///
/// Same seed, same numbers, on every run and machine. Thread-safe (one mutex); draw
/// many numbers per call (`fill...`) rather than one at a time in hot loops.
public final class Generator: Sendable {
    private let state: Mutex<RNGState>

    /// The process-wide default generator (seed 0 until `manualSeed`).
    public static let `default` = Generator(seed: 0)

    public init(seed: UInt64) {
        state = Mutex(Generator.seededState(seed))
    }

    /// Resets the default generator to `seed`.
    public static func manualSeed(_ seed: UInt64) { Generator.default.seed(seed) }

    /// Resets this generator to `seed`.
    public func seed(_ seed: UInt64) { state.withLock { $0 = Generator.seededState(seed) } }

    /// The state, for checkpoints and for replaying a random stream (e.g. dropout recompute).
    public var currentState: RNGState {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }

    static func seededState(_ seed: UInt64) -> RNGState {
        var x = seed
        var s: [UInt64] = []
        for _ in 0..<4 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            s.append(z ^ (z >> 31))
        }
        return RNGState(s: s, spareNormal: nil)
    }

    @inline(__always)
    static func next(_ st: inout RNGState) -> UInt64 {
        let result = rotl(st.s[1] &* 5, 7) &* 9
        let t = st.s[1] << 17
        st.s[2] ^= st.s[0]
        st.s[3] ^= st.s[1]
        st.s[1] ^= st.s[2]
        st.s[0] ^= st.s[3]
        st.s[2] ^= t
        st.s[3] = rotl(st.s[3], 45)
        return result
    }

    @inline(__always) static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Next raw 64 bits.
    public func nextUInt64() -> UInt64 { state.withLock { Generator.next(&$0) } }

    /// Fills with uniform doubles in [0, 1) (53 random bits each).
    public func fillUniform(_ out: UnsafeMutableBufferPointer<Double>) {
        state.withLock { st in
            for i in 0..<out.count { out[i] = Double(Generator.next(&st) >> 11) * 0x1.0p-53 }
        }
    }

    /// Fills with standard normal deviates (Box–Muller).
    public func fillNormal(_ out: UnsafeMutableBufferPointer<Double>) {
        state.withLock { st in
            var i = 0
            if i < out.count, let spare = st.spareNormal {
                out[i] = spare
                st.spareNormal = nil
                i += 1
            }
            while i < out.count {
                var u1 = 0.0
                repeat { u1 = Double(Generator.next(&st) >> 11) * 0x1.0p-53 } while u1 == 0
                let u2 = Double(Generator.next(&st) >> 11) * 0x1.0p-53
                let r = (-2 * logDouble(u1)).squareRoot()
                let theta = 2 * Double.pi * u2
                out[i] = r * cosDouble(theta)
                if i + 1 < out.count { out[i + 1] = r * sinDouble(theta) } else { st.spareNormal = r * sinDouble(theta) }
                i += 2
            }
        }
    }

    /// A uniform integer in `0..<bound` (unbiased, Lemire's method with rejection).
    public func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "Generator.nextInt: bound must be positive, got \(bound)")
        return state.withLock { st in
            let b = UInt64(bound)
            while true {
                let r = Generator.next(&st)
                let m = r.multipliedFullWidth(by: b)
                if m.low >= (0 &- b) % b { return Int(m.high) }
            }
        }
    }

    /// A random permutation of `0..<n` (Fisher–Yates).
    public func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = nextInt(below: i + 1)
            p.swapAt(i, j)
        }
        return p
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func logDouble(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func cosDouble(_ x: Double) -> Double { Glibc.cos(x) }
@inline(__always) func sinDouble(_ x: Double) -> Double { Glibc.sin(x) }
#endif
