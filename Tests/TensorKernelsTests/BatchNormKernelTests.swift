import XCTest
import TensorKernels

/// The fused batch-norm kernels against textbook loops in Double, on shapes whose
/// per-channel runs (`inner`) hit the unrolled body, its tail and both (0, 1, 7, 8, 9, 33).
final class BatchNormKernelTests: XCTestCase {
    struct Reference {
        var y: [Double], mean: [Double], variance: [Double], dx: [Double], dgamma: [Double], dbeta: [Double]
    }

    /// Textbook forward and backward, one element at a time.
    static func reference(x: [Double], dy: [Double], gamma: [Double], beta: [Double],
                          outer: Int, channels: Int, inner: Int, eps: Double) -> Reference {
        let m = outer * inner
        var r = Reference(y: .init(repeating: 0, count: x.count), mean: .init(repeating: 0, count: channels),
                          variance: .init(repeating: 0, count: channels), dx: .init(repeating: 0, count: x.count),
                          dgamma: .init(repeating: 0, count: channels), dbeta: .init(repeating: 0, count: channels))
        func idx(_ o: Int, _ c: Int, _ i: Int) -> Int { (o * channels + c) * inner + i }
        for c in 0..<channels {
            var s = 0.0
            for o in 0..<outer { for i in 0..<inner { s += x[idx(o, c, i)] } }
            let mu = m == 0 ? 0 : s / Double(m)
            var v = 0.0
            for o in 0..<outer { for i in 0..<inner { v += (x[idx(o, c, i)] - mu) * (x[idx(o, c, i)] - mu) } }
            v = m == 0 ? 0 : v / Double(m)
            let invstd = 1 / (v + eps).squareRoot()
            r.mean[c] = mu
            r.variance[c] = v
            var sdy = 0.0, sdyxh = 0.0
            for o in 0..<outer {
                for i in 0..<inner {
                    let xh = (x[idx(o, c, i)] - mu) * invstd
                    r.y[idx(o, c, i)] = xh * gamma[c] + beta[c]
                    sdy += dy[idx(o, c, i)]
                    sdyxh += dy[idx(o, c, i)] * xh
                }
            }
            r.dbeta[c] = sdy
            r.dgamma[c] = sdyxh
            for o in 0..<outer {
                for i in 0..<inner {
                    let xh = (x[idx(o, c, i)] - mu) * invstd
                    r.dx[idx(o, c, i)] = gamma[c] * invstd / Double(m) * (Double(m) * dy[idx(o, c, i)] - sdy - xh * sdyxh)
                }
            }
        }
        return r
    }

    func check<T: BinaryFloatingPoint & BatchNormStorage>(_: T.Type, outer: Int, channels: Int, inner: Int, tolerance: Double,
                                                         file: StaticString = #filePath, line: UInt = #line) {
        var state: UInt64 = UInt64(outer * 1_000_003 + channels * 1009 + inner + 7)
        func rand() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        let n = outer * channels * inner
        // An offset mean and a spread: the two-pass variance must not lose it.
        let x = (0..<n).map { _ in 3 + 2 * rand() }, dy = (0..<n).map { _ in rand() - 0.5 }
        let gamma = (0..<channels).map { _ in 0.5 + rand() }, beta = (0..<channels).map { _ in rand() - 0.5 }
        let xs = x.map { T($0) }, dys = dy.map { T($0) }, gs = gamma.map { T($0) }, bs = beta.map { T($0) }
        // The reference sees exactly the rounded inputs.
        let ref = Self.reference(x: xs.map { Double($0) }, dy: dys.map { Double($0) }, gamma: gs.map { Double($0) },
                                 beta: bs.map { Double($0) }, outer: outer, channels: channels, inner: inner, eps: 1e-5)
        var y = [T](repeating: 0, count: n), mean = [T](repeating: 0, count: channels), variance = [T](repeating: 0, count: channels)
        var dx = [T](repeating: 0, count: n), dgamma = [T](repeating: 0, count: channels), dbeta = [T](repeating: 0, count: channels)
        xs.withUnsafeBufferPointer { xp in
            gs.withUnsafeBufferPointer { gp in
                bs.withUnsafeBufferPointer { bp in
                    batchNormForward(xp.baseAddress!, outer: outer, channels: channels, inner: inner, gamma: gp.baseAddress, beta: bp.baseAddress,
                                     eps: 1e-5, &y, mean: &mean, variance: &variance)
                    dys.withUnsafeBufferPointer { dp in
                        batchNormBackward(dp.baseAddress!, xp.baseAddress!, outer: outer, channels: channels, inner: inner, gamma: gp.baseAddress,
                                          mean: mean, variance: variance, eps: 1e-5, dx: &dx, dgamma: &dgamma, dbeta: &dbeta)
                    }
                }
            }
        }
        func close(_ a: [T], _ b: [Double], _ what: String) {
            for (i, (u, v)) in zip(a, b).enumerated() where abs(Double(u) - v) > tolerance * max(1, abs(v)) {
                XCTFail("\(T.self) [\(outer), \(channels), \(inner)] \(what)[\(i)]: \(u), expected \(v)", file: file, line: line)
                return
            }
        }
        if outer * inner > 0 {
            close(y, ref.y, "y")
            close(mean, ref.mean, "mean")
            close(variance, ref.variance, "variance")
            close(dx, ref.dx, "dx")
        }
        close(dgamma, ref.dgamma, "dgamma")
        close(dbeta, ref.dbeta, "dbeta")
    }

    func testForwardAndBackwardMatchNaiveLoops() {
        for (outer, channels, inner) in [(1, 1, 1), (3, 2, 0), (2, 3, 1), (4, 2, 7), (2, 5, 8), (3, 2, 9), (2, 3, 33), (1, 4, 100), (5, 1, 17)] {
            check(Double.self, outer: outer, channels: channels, inner: inner, tolerance: 1e-12)
            // One element per channel: variance 0, invstd = 1/sqrt(eps) ≈ 316, and y = x·scale + shift
            // cancels two terms of size |μ|·316 in Float32 — accurate only to ~1e-4 there.
            if outer * inner != 1 { check(Float.self, outer: outer, channels: channels, inner: inner, tolerance: 2e-5) }
        }
    }

    /// Channels split over threads (large enough per channel) give the same numbers as
    /// the reference, and the same bits run to run.
    func testLargeChannelsMatchAndAreDeterministic() {
        check(Float.self, outer: 8, channels: 6, inner: 28 * 28 + 3, tolerance: 2e-5)
        let n = 8 * 6 * 785
        let x = (0..<n).map { Float(($0 * 7919) % 1013) / 97 }
        func run() -> [Float] {
            var y = [Float](repeating: 0, count: n), mean = [Float](repeating: 0, count: 6), variance = [Float](repeating: 0, count: 6)
            batchNormForward(x, outer: 8, channels: 6, inner: 785, gamma: nil, beta: nil, eps: 1e-5, &y, mean: &mean, variance: &variance)
            return y + mean + variance
        }
        XCTAssertEqual(run(), run())
    }
}
