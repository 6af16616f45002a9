import XCTest
import TensorKernels

/// One pooling configuration with naive references over an explicitly padded plane.
struct PoolCase: CustomStringConvertible {
    var planes: Int, h: Int, w: Int
    var kernel: (Int, Int)
    var stride: (Int, Int)
    var padding: (Int, Int) = (0, 0)
    var ceilMode = false

    var description: String { "P\(planes) \(h)x\(w) k\(kernel) s\(stride) p\(padding) ceil \(ceilMode)" }
    var geometry: Pool2dGeometry {
        Pool2dGeometry(height: h, width: w, kernel: kernel, stride: stride, padding: padding, ceilMode: ceilMode)
    }

    /// Output size from the textbook formula (Double floor/ceil), then PyTorch's ceil-mode rule.
    static func size(_ n: Int, _ k: Int, _ s: Int, _ p: Int, _ ceilMode: Bool) -> Int {
        let q = Double(n + 2 * p - k) / Double(s)
        var out = Int(ceilMode ? q.rounded(.up) : q.rounded(.down)) + 1
        if ceilMode && (out - 1) * s >= n + p { out -= 1 }
        return out
    }
    var outH: Int { PoolCase.size(h, kernel.0, stride.0, padding.0, ceilMode) }
    var outW: Int { PoolCase.size(w, kernel.1, stride.1, padding.1, ceilMode) }

    /// Window (in padded coordinates, clipped to the padded plane) of output (i, j).
    func window(_ i: Int, _ j: Int) -> (rows: Range<Int>, cols: Range<Int>) {
        let r0 = i * stride.0, c0 = j * stride.1
        return (r0..<min(r0 + kernel.0, h + 2 * padding.0), c0..<min(c0 + kernel.1, w + 2 * padding.1))
    }
    func isReal(_ r: Int, _ c: Int) -> Bool {
        r >= padding.0 && r < h + padding.0 && c >= padding.1 && c < w + padding.1
    }

    func naiveMax(_ x: [Double]) -> ([Double], [Int64]) {
        var y: [Double] = [], idx: [Int64] = []
        for p in 0..<planes {
            for i in 0..<outH {
                for j in 0..<outW {
                    var best = -Double.infinity, bestIndex = -1
                    let (rows, cols) = window(i, j)
                    for r in rows {
                        for c in cols {
                            let v = isReal(r, c) ? x[(p * h + r - padding.0) * w + c - padding.1] : -Double.infinity
                            let index = isReal(r, c) ? (r - padding.0) * w + (c - padding.1) : -1
                            if bestIndex < 0 && index >= 0 { bestIndex = index } // first real element by default
                            if index >= 0 && (v > best || v.isNaN) { best = v; bestIndex = index }
                        }
                    }
                    y.append(best)
                    idx.append(Int64(bestIndex))
                }
            }
        }
        return (y, idx)
    }

    func naiveAvg(_ x: [Double], countIncludePad: Bool) -> [Double] {
        var y: [Double] = []
        for p in 0..<planes {
            for i in 0..<outH {
                for j in 0..<outW {
                    let (rows, cols) = window(i, j)
                    var s = 0.0, real = 0
                    for r in rows {
                        for c in cols where isReal(r, c) {
                            s += x[(p * h + r - padding.0) * w + c - padding.1]
                            real += 1
                        }
                    }
                    y.append(s / Double(countIncludePad ? rows.count * cols.count : real))
                }
            }
        }
        return y
    }

    /// Adjoint of `naiveAvg`: each output gradient spread over its window's real elements.
    func naiveAvgBackward(_ gy: [Double], countIncludePad: Bool) -> [Double] {
        var gx = [Double](repeating: 0, count: planes * h * w)
        var k = 0
        for p in 0..<planes {
            for i in 0..<outH {
                for j in 0..<outW {
                    let (rows, cols) = window(i, j)
                    var real = 0
                    for r in rows { for c in cols where isReal(r, c) { real += 1 } }
                    let d = Double(countIncludePad ? rows.count * cols.count : real)
                    for r in rows {
                        for c in cols where isReal(r, c) { gx[(p * h + r - padding.0) * w + c - padding.1] += gy[k] / d }
                    }
                    k += 1
                }
            }
        }
        return gx
    }
}

final class PoolingTests: XCTestCase {
    static let cases: [PoolCase] = [
        PoolCase(planes: 3, h: 4, w: 4, kernel: (2, 2), stride: (2, 2)),
        PoolCase(planes: 2, h: 7, w: 7, kernel: (3, 3), stride: (2, 2)),                         // overlapping (AlexNet)
        PoolCase(planes: 2, h: 8, w: 7, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
        PoolCase(planes: 2, h: 6, w: 5, kernel: (3, 2), stride: (2, 1), padding: (1, 1)),
        PoolCase(planes: 2, h: 8, w: 7, kernel: (3, 3), stride: (2, 2), padding: (1, 1), ceilMode: true),
        PoolCase(planes: 1, h: 6, w: 6, kernel: (3, 3), stride: (2, 2), ceilMode: true),          // partial last window
        PoolCase(planes: 2, h: 5, w: 9, kernel: (2, 4), stride: (3, 2), padding: (1, 2), ceilMode: true),
        PoolCase(planes: 1, h: 1, w: 1, kernel: (1, 1), stride: (1, 1)),
        PoolCase(planes: 1, h: 3, w: 3, kernel: (3, 3), stride: (1, 1), padding: (1, 1)),
        PoolCase(planes: 0, h: 4, w: 4, kernel: (2, 2), stride: (2, 2)),
        PoolCase(planes: 5, h: 5, w: 5, kernel: (5, 5), stride: (5, 5)),                          // global pooling
        PoolCase(planes: 64, h: 32, w: 32, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),      // parallel path
        // 2x2 stride 2 without padding: its own loop (odd sizes drop the last row/column).
        PoolCase(planes: 3, h: 5, w: 7, kernel: (2, 2), stride: (2, 2)),
        PoolCase(planes: 64, h: 28, w: 28, kernel: (2, 2), stride: (2, 2)),
        PoolCase(planes: 2, h: 5, w: 5, kernel: (2, 2), stride: (2, 2), ceilMode: true),             // partial windows: general loop
    ]

    /// Runs `body` with base addresses of `x` (plus one spare element, so empty inputs work).
    func withBuffers<T: BinaryFloatingPoint>(_ x: [T], outCount: Int, inCount: Int,
                                             _ body: (UnsafePointer<T>, UnsafeMutablePointer<T>) -> Void) -> [T] {
        let xs = x + [0]
        var out = [T](repeating: .nan, count: outCount + 1)
        xs.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in body(xp.baseAddress!, op.baseAddress!) } }
        XCTAssertTrue(out.last!.isNaN, "wrote past the end")
        return Array(out.dropLast())
    }

    func testMaxPoolMatchesNaive() {
        var rng = ConvPoolRNG(seed: 21)
        for cs in Self.cases {
            let g = cs.geometry
            XCTAssertEqual([g.outH, g.outW], [cs.outH, cs.outW], "\(cs)")
            let x = rng.array(cs.planes * cs.h * cs.w)
            let (expected, expectedIdx) = cs.naiveMax(x)
            var idx = [Int64](repeating: -7, count: expected.count + 1)
            let y = withBuffers(x, outCount: expected.count, inCount: x.count) { xp, yp in
                idx.withUnsafeMutableBufferPointer { ip in
                    maxPool2dForward(xp, planes: cs.planes, geometry: g, yp, indices: ip.baseAddress!)
                }
            }
            XCTAssertEqual(y, expected, "max values \(cs)")
            XCTAssertEqual(Array(idx.dropLast()), expectedIdx, "max indices \(cs)")
            XCTAssertEqual(idx.last, -7)

            // Backward: scatter-add by index.
            let gy = rng.array(expected.count)
            var gxExpected = [Double](repeating: 0, count: x.count)
            for (k, i) in expectedIdx.enumerated() { gxExpected[(k / (cs.outH * cs.outW)) * cs.h * cs.w + Int(i)] += gy[k] }
            let gIdx = idx
            let gx = withBuffers(gy, outCount: x.count, inCount: gy.count) { gp, xp in
                gIdx.withUnsafeBufferPointer { ip in
                    maxPool2dBackward(gp, indices: ip.baseAddress!, planes: cs.planes, geometry: g, xp)
                }
            }
            assertClose(gx, gxExpected, tol: 1e-12, "max backward \(cs)")
        }
    }

    /// The Float32 2x2/stride-2 path (vector selects; full vectors, tails read as whole
    /// vectors inside the input, tails at the end of the input through a padded copy)
    /// against the scalar loop the Double path runs: the same maxima and indices, with many
    /// ties (values from a set of five) and NaNs and infinities sprinkled in.
    func testMaxPool2x2Float32MatchesTheScalarLoop() {
        var rng = ConvPoolRNG(seed: 23)
        let shapes = [(3, 20, 20), (2, 10, 34), (64, 28, 28), (3, 5, 7), (16, 10, 10), (1, 2, 2), (2, 3, 33), (6, 28, 28)]
        for (planes, h, w) in shapes {
            let g = Pool2dGeometry(height: h, width: w, kernel: (2, 2), stride: (2, 2))
            let n = planes * h * w, outCount = planes * g.outH * g.outW
            let special: [Double] = [.nan, .infinity, -.infinity]
            let x: [Double] = rng.array(n).map { v in
                let r = (v + 1) / 2  // [0, 1)
                if r < 0.03 { return special[Int(r * 100) % 3] }
                return Double(Int(r * 5))  // ties
            }
            var expected = [Double](repeating: 0, count: outCount), expectedIdx = [Int64](repeating: 0, count: outCount)
            maxPool2dForward(x, planes: planes, geometry: g, &expected, indices: &expectedIdx)
            let xf = x.map { Float($0) }
            var y = [Float](repeating: 7, count: outCount + 1), idx = [Int64](repeating: -7, count: outCount + 1)
            y.withUnsafeMutableBufferPointer { yp in idx.withUnsafeMutableBufferPointer { ip in
                maxPool2dForward(xf, planes: planes, geometry: g, yp.baseAddress!, indices: ip.baseAddress!)
            } }
            XCTAssertEqual(y.last, 7, "wrote past the output \(planes)x\(h)x\(w)")
            XCTAssertEqual(idx.last, -7, "wrote past the indices \(planes)x\(h)x\(w)")
            XCTAssertEqual(Array(idx.dropLast()), expectedIdx, "indices \(planes)x\(h)x\(w)")
            for k in 0..<outCount {
                let e = expected[k], v = Double(y[k])
                XCTAssertTrue(e.isNaN ? v.isNaN : v == e, "value \(k): \(v) vs \(e), \(planes)x\(h)x\(w)")
            }
        }
    }

    func testMaxPoolTiesNaNAndInfinities() {
        // Ties: the first element of the window in row-major order wins.
        let g = Pool2dGeometry(height: 4, width: 4, kernel: (2, 2), stride: (2, 2))
        let ones = [Float](repeating: 1, count: 16)
        var idx = [Int64](repeating: 0, count: 4)
        var y = [Float](repeating: 0, count: 4)
        maxPool2dForward(ones, planes: 1, geometry: g, &y, indices: &idx)
        XCTAssertEqual(y, [1, 1, 1, 1])
        XCTAssertEqual(idx, [0, 2, 8, 10])

        // NaN propagates.
        var withNaN = ones
        withNaN[5] = .nan
        maxPool2dForward(withNaN, planes: 1, geometry: g, &y, indices: &idx)
        XCTAssertTrue(y[0].isNaN)
        XCTAssertEqual(idx[0], 5)
        XCTAssertEqual(Array(y[1...]), [1, 1, 1])
        // A larger value after a NaN does not replace it.
        var nanFirst = ones
        nanFirst[0] = .nan
        nanFirst[5] = 9
        maxPool2dForward(nanFirst, planes: 1, geometry: g, &y, indices: &idx)
        XCTAssertTrue(y[0].isNaN)
        XCTAssertEqual(idx[0], 0)

        // Ties and NaN later in a 2x2 window: the last NaN wins, as in the general loop.
        var twoNaN = ones
        twoNaN[1] = .nan
        twoNaN[4] = .nan
        maxPool2dForward(twoNaN, planes: 1, geometry: g, &y, indices: &idx)
        XCTAssertTrue(y[0].isNaN)
        XCTAssertEqual(idx[0], 4)
        var allNegInf = [Float](repeating: -.infinity, count: 16)
        allNegInf[15] = 2
        maxPool2dForward(allNegInf, planes: 1, geometry: g, &y, indices: &idx)
        XCTAssertEqual(y, [-.infinity, -.infinity, -.infinity, 2])
        XCTAssertEqual(idx, [0, 2, 8, 15])

        // All -inf (with padding): the value is -inf and the index a real element.
        let gp = Pool2dGeometry(height: 2, width: 2, kernel: (3, 3), stride: (1, 1), padding: (1, 1))
        let ninf = [Double](repeating: -.infinity, count: 4)
        var yd = [Double](repeating: 0, count: 4)
        maxPool2dForward(ninf, planes: 1, geometry: gp, &yd, indices: &idx)
        XCTAssertEqual(yd, [-.infinity, -.infinity, -.infinity, -.infinity])
        XCTAssertEqual(idx, [0, 0, 0, 0])

        // Negative values next to padding: padding (-inf) never wins.
        let neg: [Float] = [-5, -4, -3, -2]
        var yn = [Float](repeating: 0, count: 4)
        maxPool2dForward(neg, planes: 1, geometry: gp, &yn, indices: &idx)
        XCTAssertEqual(yn, [-2, -2, -2, -2])
        XCTAssertEqual(idx, [3, 3, 3, 3])
    }

    func testAvgPoolMatchesNaive() {
        var rng = ConvPoolRNG(seed: 22)
        for cs in Self.cases {
            let g = cs.geometry
            let x = rng.array(cs.planes * cs.h * cs.w)
            for include in [true, false] {
                let expected = cs.naiveAvg(x, countIncludePad: include)
                let y = withBuffers(x, outCount: expected.count, inCount: x.count) { xp, yp in
                    avgPool2dForward(xp, planes: cs.planes, geometry: g, countIncludePad: include, yp)
                }
                assertClose(y, expected, tol: 1e-12, "avg \(cs) includePad \(include)")

                let gy = rng.array(expected.count)
                let gx = withBuffers(gy, outCount: x.count, inCount: gy.count) { gp, xp in
                    avgPool2dBackward(gp, planes: cs.planes, geometry: g, countIncludePad: include, xp)
                }
                assertClose(gx, cs.naiveAvgBackward(gy, countIncludePad: include), tol: 1e-12, "avg backward \(cs) includePad \(include)")
                // Adjoint identity <avg(x), gy> = <x, avgBackward(gy)>.
                let lhs = zip(y, gy).reduce(0) { $0 + $1.0 * $1.1 }, rhs = zip(x, gx).reduce(0) { $0 + $1.0 * $1.1 }
                XCTAssertEqual(lhs, rhs, accuracy: 1e-9, "avg adjoint \(cs)")
            }
        }
    }

    func testAvgPoolFloat32AndHandFixture() {
        // 1x4x4 with 1..16, 2x2 stride 2: means of each block.
        let x: [Float] = (1...16).map(Float.init)
        let g = Pool2dGeometry(height: 4, width: 4, kernel: (2, 2), stride: (2, 2))
        var y = [Float](repeating: 0, count: 4)
        avgPool2dForward(x, planes: 1, geometry: g, countIncludePad: true, &y)
        XCTAssertEqual(y, [3.5, 5.5, 11.5, 13.5])
        // 3x3 padded by 1, corner windows hold 4 real elements of 9.
        let gp = Pool2dGeometry(height: 2, width: 2, kernel: (3, 3), stride: (1, 1), padding: (1, 1))
        var yp = [Float](repeating: 0, count: 4)
        avgPool2dForward([1, 2, 3, 4], planes: 1, geometry: gp, countIncludePad: true, &yp)
        XCTAssertEqual(yp, [Float](repeating: Float(10) / 9, count: 4))
        avgPool2dForward([1, 2, 3, 4], planes: 1, geometry: gp, countIncludePad: false, &yp)
        XCTAssertEqual(yp, [2.5, 2.5, 2.5, 2.5])
    }

    func testOutputSizeRules() {
        XCTAssertEqual(Pool2dGeometry.outputSize(input: 55, kernel: 3, stride: 2, padding: 0, ceilMode: false), 27)
        XCTAssertEqual(Pool2dGeometry.outputSize(input: 6, kernel: 3, stride: 2, padding: 0, ceilMode: false), 2)
        XCTAssertEqual(Pool2dGeometry.outputSize(input: 6, kernel: 3, stride: 2, padding: 0, ceilMode: true), 3)
        // ceil mode never starts a window in the right padding.
        XCTAssertEqual(Pool2dGeometry.outputSize(input: 5, kernel: 2, stride: 2, padding: 1, ceilMode: true), 3)
        XCTAssertEqual(Pool2dGeometry.outputSize(input: 2, kernel: 3, stride: 1, padding: 0, ceilMode: false), 0)
    }
}
