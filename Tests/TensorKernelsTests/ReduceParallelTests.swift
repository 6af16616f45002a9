import XCTest
import TensorKernels

/// reduceStrided on inputs large enough for its threaded and SIMD paths (≥ 2 · minChunk
/// elements): Float32 against a Float64 naive loop, and bit-for-bit equal results for one
/// and two kernel threads and from run to run.
final class ReduceParallelTests: XCTestCase {
    typealias F = ReduceFixture

    /// Runs `body` with `KernelThreading.maxThreads` set to `threads`, then restores it.
    static func withThreads<R>(_ threads: Int, _ body: () -> R) -> R {
        let saved = KernelThreading.maxThreads
        KernelThreading.maxThreads = threads
        defer { KernelThreading.maxThreads = saved }
        return body()
    }

    /// A Float32 strided view: `view` values rounded to Float, in the same layout.
    struct FloatView {
        var shape: [Int], strides: [Int], offset: Int
        var buffer: [Float]
        var exact: F.View  // the same values as Double, for the naive oracle
    }

    static func floatView(_ shape: [Int], _ layout: F.Layout, _ rng: inout F.Rand, nanAt: Int? = nil) -> FloatView {
        var v = F.view(shape, layout, &rng)
        for i in 0..<v.buffer.count where !v.buffer[i].isNaN { v.buffer[i] = Double(Float(v.buffer[i])) }
        if let k = nanAt, let idx = F.multiIndices(shape).dropFirst(k).first { v.buffer[v.index(idx)] = .nan }
        return FloatView(shape: shape, strides: v.strides, offset: v.offset, buffer: v.buffer.map { Float($0) }, exact: v)
    }

    static func run<C: ReduceCombiner>(_ v: FloatView, _ flags: [Bool], _ c: C.Type) -> [Float] where C.Element == Float {
        ReduceTests.runReduce(shape: v.shape, strides: v.strides, offset: v.offset, buffer: v.buffer, flags, c)
    }

    static func same(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }
    }

    /// (shape, reduced flags): one long row (super-block partials), many rows (row split),
    /// folding over dim 0 (column split, four rows at a time), few columns, odd sizes, rank 3.
    static let cases: [([Int], [Bool])] = [
        ([(1 << 18) + 5], [true]),
        ([3, 50_001], [false, true]),
        ([50_001, 3], [true, false]),
        ([513, 517], [true, false]),
        ([513, 517], [false, true]),
        ([513, 517], [true, true]),
        ([2, 301, 303], [true, false, true]),
        ([5, 17, 1543], [false, true, false]),
    ]

    func testFloatSumMaxMinMatchNaiveAndDoNotDependOnThreads() {
        var rng = F.Rand(11)
        for (shape, flags) in Self.cases {
            for layout in F.Layout.allCases {
                let v = Self.floatView(shape, layout, &rng)
                let label = "shape \(shape) \(layout) flags \(flags)"
                // Σ|x| per output slot bounds the rounding error of a float sum.
                let sumRef = ReduceTests.naiveReduce(v.exact, flags, identity: 0, +)
                let absRef = ReduceTests.naiveReduce(v.exact, flags, identity: 0) { $0 + Swift.abs($1) }
                let one = Self.withThreads(1) { Self.run(v, flags, SumCombiner<Float>.self) }
                let two = Self.withThreads(2) { Self.run(v, flags, SumCombiner<Float>.self) }
                let again = Self.withThreads(2) { Self.run(v, flags, SumCombiner<Float>.self) }
                XCTAssertTrue(Self.same(one, two), "sum: 1 vs 2 threads differ, \(label)")
                XCTAssertTrue(Self.same(two, again), "sum: run to run differ, \(label)")
                XCTAssertEqual(two.count, sumRef.count, label)
                // Tolerance 1e-5·Σ|x|: the kernel folds 32 lanes per 4096-element block (dim-0
                // folds add four rows per step), so its error is far below the n·eps·Σ|x|
                // (1.6e-2·Σ|x| at n = 2^18) a single running Float sum may reach.
                for i in 0..<two.count {
                    XCTAssertLessThanOrEqual(Swift.abs(Double(two[i]) - sumRef[i]), 1e-5 * absRef[i] + 1e-30, "sum \(label) [\(i)]")
                }
                for (name, ref) in [("max", ReduceTests.naiveReduce(v.exact, flags, identity: -.infinity) { Swift.max($0, $1) }),
                                    ("min", ReduceTests.naiveReduce(v.exact, flags, identity: .infinity) { Swift.min($0, $1) })] {
                    let got1 = Self.withThreads(1) { name == "max" ? Self.run(v, flags, MaxCombiner<Float>.self) : Self.run(v, flags, MinCombiner<Float>.self) }
                    let got2 = Self.withThreads(2) { name == "max" ? Self.run(v, flags, MaxCombiner<Float>.self) : Self.run(v, flags, MinCombiner<Float>.self) }
                    XCTAssertEqual(got2, ref.map { Float($0) }, "\(name) \(label)")
                    XCTAssertTrue(Self.same(got1, got2), "\(name): 1 vs 2 threads differ, \(label)")
                }
            }
        }
    }

    func testNaNPropagatesThroughEveryPath() {
        var rng = F.Rand(12)
        for (shape, flags) in Self.cases {
            let n = elementCount(shape)
            let v = Self.floatView(shape, .contiguous, &rng, nanAt: n / 2 + 1)
            let ref = ReduceTests.naiveReduce(v.exact, flags, identity: 0, +)
            for threads in [1, 2] {
                let s = Self.withThreads(threads) { Self.run(v, flags, SumCombiner<Float>.self) }
                let mx = Self.withThreads(threads) { Self.run(v, flags, MaxCombiner<Float>.self) }
                let mn = Self.withThreads(threads) { Self.run(v, flags, MinCombiner<Float>.self) }
                for i in 0..<ref.count {
                    let label = "shape \(shape) flags \(flags) threads \(threads) [\(i)]"
                    XCTAssertEqual(s[i].isNaN, ref[i].isNaN, "sum \(label)")
                    XCTAssertEqual(mx[i].isNaN, ref[i].isNaN, "max \(label)")
                    XCTAssertEqual(mn[i].isNaN, ref[i].isNaN, "min \(label)")
                }
            }
        }
    }

    func testDoubleSumOfLongRowMatchesNaive() {
        var rng = F.Rand(13)
        for (shape, flags) in Self.cases.prefix(4) {
            let v = F.view(shape, .stepped, &rng)
            for threads in [1, 2] {
                let got = Self.withThreads(threads) { ReduceTests.runReduce(v, flags, SumCombiner<Double>.self) }
                let ref = ReduceTests.naiveReduce(v, flags, identity: 0, +)
                for i in 0..<ref.count { F.assertClose(got[i], ref[i], tol: 1e-9, "sum \(shape) threads \(threads) [\(i)]") }
                let mx = Self.withThreads(threads) { ReduceTests.runReduce(v, flags, MaxCombiner<Double>.self) }
                XCTAssertEqual(mx, ReduceTests.naiveReduce(v, flags, identity: -.infinity) { Swift.max($0, $1) })
            }
        }
    }

    func testSquaredDeviationSumOfLongRows() {
        // Long contiguous rows take the SIMD path; a large common offset checks the two-pass form.
        var rng = F.Rand(14)
        for (shape, flags) in [([4099], [true]), ([3, 5000], [false, true]), ([2, 37, 300], [false, true, true])] {
            let v = F.view(shape, .contiguous, &rng) { r in Double(Float(1e4 + r.double())) }  // Float-exact inputs
            let sums = ReduceTests.naiveReduce(v, flags, identity: 0, +)
            let n = zip(shape, flags).reduce(1) { $1.1 ? $0 * $1.0 : $0 }
            let mean = sums.map { $0 / Double(n) }
            var ref = [Double](repeating: 0, count: mean.count)
            var keep = shape
            for d in 0..<keep.count where flags[d] { keep[d] = 1 }
            let ks = contiguousStrides(keep)
            for idx in F.multiIndices(shape) {
                var o = 0
                for d in 0..<idx.count where !flags[d] { o += idx[d] * ks[d] }
                let dx = v.at(idx) - mean[o]
                ref[o] += dx * dx
            }
            var m2 = [Double](repeating: 0, count: mean.count)
            v.buffer.withUnsafeBufferPointer { b in
                squaredDeviationSumStrided(b.baseAddress!, shape: shape, srcStrides: v.strides, srcOffset: v.offset,
                                           reduced: flags, mean: mean, &m2)
            }
            for i in 0..<ref.count { F.assertClose(m2[i], ref[i], tol: 1e-10, "m2 \(shape) \(flags) [\(i)]") }
            // Float32 on the same (Float-exact) data, mean rounded to Float: tolerance 1e-4
            // relative (squares summed in 32 SIMD lanes per 4096-element block, blocks in order).
            let vf = v.buffer.map { Float($0) }
            let meanF = mean.map { Float($0) }
            var m2f = [Float](repeating: 0, count: mean.count)
            vf.withUnsafeBufferPointer { b in
                squaredDeviationSumStrided(b.baseAddress!, shape: shape, srcStrides: v.strides, srcOffset: v.offset,
                                           reduced: flags, mean: meanF, &m2f)
            }
            for i in 0..<ref.count {
                XCTAssertEqual(Double(m2f[i]), ref[i], accuracy: 1e-4 * ref[i], "float m2 \(shape) \(flags) [\(i)]")
            }
        }
    }

    func testArgExtremeAcrossContiguousRowsMatchesNaive() {
        // max/min along a dim that is not the contiguous last one: the row-sweeping path,
        // serial and split among threads (by output rows or by columns), with ties and NaN.
        var rng = F.Rand(15)
        for (shape, dim) in [([300, 700], 0), ([5, 200, 150], 1), ([6, 20, 9], 0), ([2, 3, 40], 1), ([1, 8], 0), ([40, 1, 16], 0)] {
            var v = F.view(shape, .contiguous, &rng) { r in r.tie() }
            let count = elementCount(shape)
            for k in [count / 3, count / 3 + 17, 2 * count / 3] {
                if let idx = F.multiIndices(shape).dropFirst(k).first { v.buffer[v.index(idx)] = .nan }
            }
            var outer = shape
            outer.remove(at: dim)
            let lines = elementCount(outer)
            for findMax in [true, false] {
                for threads in [1, 2] {
                    var values = [Double](repeating: 0, count: lines), idx = [Int64](repeating: -1, count: lines)
                    Self.withThreads(threads) {
                        v.buffer.withUnsafeBufferPointer { b in
                            argExtremeAlongDim(b.baseAddress!, shape: shape, strides: v.strides, offset: v.offset, dim: dim,
                                               values: &values, indices: &idx, findMax: findMax)
                        }
                    }
                    for (l, o) in F.multiIndices(outer).enumerated() {
                        var best = 0, bestV = Double.nan
                        for i in 0..<shape[dim] {
                            var full = o
                            full.insert(i, at: dim)
                            let x = v.at(full)
                            if i == 0 { bestV = x; continue }
                            if bestV.isNaN { break }
                            if x.isNaN || (findMax ? x > bestV : x < bestV) { bestV = x; best = i }
                        }
                        XCTAssertEqual(idx[l], Int64(best), "shape \(shape) dim \(dim) max \(findMax) threads \(threads) line \(l)")
                        XCTAssert(values[l] == bestV || (values[l].isNaN && bestV.isNaN), "value line \(l)")
                    }
                }
            }
        }
    }
}
