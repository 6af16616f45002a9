import XCTest
import TensorKernels

/// Strided test inputs for the reduction, softmax, sort and scan kernel tests.
enum ReduceFixture {
    /// A small deterministic generator (xorshift-multiply), independent of TensorCore.
    struct Rand {
        var state: UInt64
        init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
        mutating func next() -> UInt64 {
            state ^= state >> 12; state ^= state << 25; state ^= state >> 27
            return state &* 2685821657736338717
        }
        mutating func int(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }
        /// Uniform in [-5, 5).
        mutating func double() -> Double { Double(next() >> 11) * 0x1.0p-53 * 10 - 5 }
        /// Small integers in [-3, 3]: many ties.
        mutating func tie() -> Double { Double(int(7) - 3) }
    }

    /// A strided view of `shape` inside a buffer: element i is at `offset + Σ i_d strides_d`.
    struct View {
        var shape: [Int]
        var strides: [Int]
        var offset: Int
        var buffer: [Double]

        func index(_ idx: [Int]) -> Int {
            var o = offset
            for (i, s) in zip(idx, strides) { o += i * s }
            return o
        }
        func at(_ idx: [Int]) -> Double { buffer[index(idx)] }
    }

    /// Layout kinds: dense, dims laid out in a random order, and every other element (with an offset).
    enum Layout: CaseIterable { case contiguous, permuted, stepped }

    /// A view of `shape` with random values (or values from `value`) in the given layout.
    static func view(_ shape: [Int], _ layout: Layout, _ rng: inout Rand, value: ((inout Rand) -> Double)? = nil) -> View {
        let rank = shape.count
        var order = Array(0..<rank)  // physical order, outermost first
        if layout == .permuted { order.reverse(); if rank > 2 { order.swapAt(0, 1) } }
        var strides = [Int](repeating: 0, count: rank)
        let step = layout == .stepped ? 2 : 1
        var acc = step
        for k in stride(from: rank - 1, through: 0, by: -1) {
            strides[order[k]] = acc
            acc *= Swift.max(shape[order[k]], 1)
        }
        let offset = layout == .contiguous ? 0 : 3
        var buffer = [Double](repeating: .nan, count: offset + acc + 1)
        for idx in multiIndices(shape) {
            var o = offset
            for (i, s) in zip(idx, strides) { o += i * s }
            buffer[o] = value.map { $0(&rng) } ?? rng.double()
        }
        return View(shape: shape, strides: strides, offset: offset, buffer: buffer)
    }

    /// Every multi-index of `shape` in row-major order.
    static func multiIndices(_ shape: [Int]) -> [[Int]] {
        let n = elementCount(shape)
        if n == 0 { return [] }
        var out: [[Int]] = []
        out.reserveCapacity(n)
        for linear in 0..<n {
            var rem = linear
            var idx = [Int](repeating: 0, count: shape.count)
            for d in stride(from: shape.count - 1, through: 0, by: -1) {
                idx[d] = rem % shape[d]
                rem /= shape[d]
            }
            out.append(idx)
        }
        return out
    }

    /// Edge and random shapes: size-0 and size-1 dims, odd sizes, ranks 0 to 4.
    static func shapes(_ rng: inout Rand, random: Int = 12) -> [[Int]] {
        var out: [[Int]] = [[], [1], [0], [7], [1, 1], [3, 0], [0, 4], [2, 3], [5, 1], [1, 5], [3, 5, 2], [2, 1, 3],
                            [4, 3, 2, 3], [2, 2, 1, 5], [37], [17, 9]]
        let extents = [1, 2, 3, 5, 7]
        for _ in 0..<random {
            let r = 1 + rng.int(4)
            out.append((0..<r).map { _ in extents[rng.int(extents.count)] })
        }
        return out
    }

    static func assertClose(_ a: Double, _ b: Double, tol: Double = 1e-9, _ message: @autoclosure () -> String,
                            file: StaticString = #filePath, line: UInt = #line) {
        if a.isNaN && b.isNaN { return }
        if a == b { return }
        XCTAssert(Swift.abs(a - b) <= tol * Swift.max(1, Swift.abs(b)), "\(message()): \(a) vs \(b)", file: file, line: line)
    }
}

/// reduceStrided, the variance pass, forEachLine, argExtremeAlongDim and cumsum against naive loops.
final class ReduceTests: XCTestCase {
    typealias F = ReduceFixture

    /// Naive keepdim reduction with `combine`, in row-major order.
    static func naiveReduce(_ v: F.View, _ flags: [Bool], identity: Double, _ combine: (Double, Double) -> Double) -> [Double] {
        var keep = v.shape
        for d in 0..<keep.count where flags[d] { keep[d] = 1 }
        var out = [Double](repeating: identity, count: elementCount(keep))
        let ks = contiguousStrides(keep)
        for idx in F.multiIndices(v.shape) {
            var o = 0
            for d in 0..<idx.count where !flags[d] { o += idx[d] * ks[d] }
            out[o] = combine(out[o], v.at(idx))
        }
        return out
    }

    static func runReduce<C: ReduceCombiner>(_ v: F.View, _ flags: [Bool], _ c: C.Type) -> [Double] where C.Element == Double {
        runReduce(shape: v.shape, strides: v.strides, offset: v.offset, buffer: v.buffer, flags, c)
    }

    /// `reduceStrided` over a strided view of `buffer`, into a fresh kept-shape output (any element type).
    static func runReduce<C: ReduceCombiner>(shape: [Int], strides: [Int], offset: Int, buffer: [C.Element],
                                             _ flags: [Bool], _ c: C.Type) -> [C.Element] {
        var keep = shape
        for d in 0..<keep.count where flags[d] { keep[d] = 1 }
        var out = [C.Element](repeating: C.identity, count: elementCount(keep))
        buffer.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { o in
                reduceStrided(b.baseAddress!, shape: shape, srcStrides: strides, srcOffset: offset, reduced: flags,
                              o.baseAddress!, c)
            }
        }
        return out
    }

    func testReduceStridedMatchesNaiveSumAndMax() {
        var rng = F.Rand(1)
        for shape in F.shapes(&rng, random: 20) {
            for layout in F.Layout.allCases {
                let v = F.view(shape, layout, &rng)
                // All flag patterns for small ranks, one random pattern otherwise.
                let patterns = shape.count <= 3 ? (0..<(1 << shape.count)).map { m in (0..<shape.count).map { m >> $0 & 1 == 1 } }
                                                : [(0..<shape.count).map { _ in rng.int(2) == 1 }]
                for flags in patterns {
                    let label = "shape \(shape) \(layout) flags \(flags)"
                    let s = Self.runReduce(v, flags, SumCombiner<Double>.self)
                    let sRef = Self.naiveReduce(v, flags, identity: 0, +)
                    XCTAssertEqual(s.count, sRef.count, label)
                    for i in 0..<s.count { F.assertClose(s[i], sRef[i], "sum \(label) [\(i)]") }
                    let m = Self.runReduce(v, flags, MaxCombiner<Double>.self)
                    let mRef = Self.naiveReduce(v, flags, identity: -.infinity) { Swift.max($0, $1) }
                    XCTAssertEqual(m, mRef, "max \(label)")
                    let mn = Self.runReduce(v, flags, MinCombiner<Double>.self)
                    XCTAssertEqual(mn, Self.naiveReduce(v, flags, identity: .infinity) { Swift.min($0, $1) }, "min \(label)")
                }
            }
        }
    }

    func testReduceStridedLongRowsAndShortRows() {
        // Long rows exercise the blocked 4-accumulator path; [N, 3] over dim 0 the column path.
        var rng = F.Rand(2)
        for (shape, flags) in [([3001], [true]), ([2, 2500], [false, true]), ([1001, 3], [true, false]), ([3, 1001], [true, false]),
                               ([257, 6], [true, true]), ([2, 1030, 3], [false, true, false])] {
            for layout in F.Layout.allCases {
                let v = F.view(shape, layout, &rng)
                let s = Self.runReduce(v, flags, SumCombiner<Double>.self)
                let ref = Self.naiveReduce(v, flags, identity: 0, +)
                for i in 0..<s.count { F.assertClose(s[i], ref[i], "sum \(shape) \(layout) \(flags) [\(i)]") }
            }
        }
    }

    func testFloatSumOfManyElementsIsAccurate() {
        // 0.1 summed 2^20 times: a single running Float accumulator is off by ~1%.
        let n = 1 << 20
        let xs = [Float](repeating: 0.1, count: n)
        var out: Float = 0
        xs.withUnsafeBufferPointer { b in
            reduceStrided(b.baseAddress!, shape: [n], srcStrides: [1], srcOffset: 0, reduced: [true], &out, SumCombiner<Float>.self)
        }
        let exact = Double(Float(0.1)) * Double(n)
        XCTAssertLessThan(Swift.abs(Double(out) - exact) / exact, 1e-5)
    }

    func testReduceStridedPropagatesNaN() {
        let xs: [Double] = [1, .nan, 3, 4, 5, 6, 7, 8, 9]
        var sum = [Double](repeating: 0, count: 3), mx = [Double](repeating: -.infinity, count: 3)
        var mn = [Double](repeating: .infinity, count: 3)
        xs.withUnsafeBufferPointer { b in
            reduceStrided(b.baseAddress!, shape: [3, 3], srcStrides: [3, 1], srcOffset: 0, reduced: [false, true], &sum, SumCombiner<Double>.self)
            reduceStrided(b.baseAddress!, shape: [3, 3], srcStrides: [3, 1], srcOffset: 0, reduced: [false, true], &mx, MaxCombiner<Double>.self)
            reduceStrided(b.baseAddress!, shape: [3, 3], srcStrides: [1, 3], srcOffset: 0, reduced: [true, false], &mn, MinCombiner<Double>.self)
        }
        XCTAssertTrue(sum[0].isNaN)
        XCTAssertEqual(Array(sum[1...]), [15, 24])
        XCTAssertTrue(mx[0].isNaN)
        XCTAssertEqual(Array(mx[1...]), [6, 9])
        // Column reduction of the transpose: column 0 is [1, NaN, 3].
        XCTAssertTrue(mn[0].isNaN)
        XCTAssertEqual(Array(mn[1...]), [4, 7])
    }

    func testEmptyReductionLeavesIdentity() {
        let xs: [Double] = [0]
        var out = [Double](repeating: 0, count: 3)
        xs.withUnsafeBufferPointer { b in
            reduceStrided(b.baseAddress!, shape: [0, 3], srcStrides: [3, 1], srcOffset: 0, reduced: [true, false], &out, SumCombiner<Double>.self)
        }
        XCTAssertEqual(out, [0, 0, 0])
    }

    func testSquaredDeviationSumMatchesNaive() {
        var rng = F.Rand(3)
        for shape in F.shapes(&rng) {
            for layout in F.Layout.allCases {
                // A large common offset: E[x²] − E[x]² would lose every digit here.
                let v = F.view(shape, layout, &rng) { r in 1e8 + r.double() }
                let flags = (0..<shape.count).map { _ in rng.int(2) == 1 }
                let sums = Self.naiveReduce(v, flags, identity: 0, +)
                let n = zip(shape, flags).reduce(1) { $1.1 ? $0 * $1.0 : $0 }
                let mean = sums.map { $0 / Double(n) }
                var m2 = [Double](repeating: 0, count: mean.count)
                v.buffer.withUnsafeBufferPointer { b in
                    squaredDeviationSumStrided(b.baseAddress!, shape: shape, srcStrides: v.strides, srcOffset: v.offset,
                                               reduced: flags, mean: mean, &m2)
                }
                // Naive: Σ (x − mean)² per output slot.
                var keep = shape
                for d in 0..<keep.count where flags[d] { keep[d] = 1 }
                let ks = contiguousStrides(keep)
                var ref = [Double](repeating: 0, count: mean.count)
                for idx in F.multiIndices(shape) {
                    var o = 0
                    for d in 0..<idx.count where !flags[d] { o += idx[d] * ks[d] }
                    let dx = v.at(idx) - mean[o]
                    ref[o] += dx * dx
                }
                for i in 0..<ref.count { F.assertClose(m2[i], ref[i], tol: 1e-6, "m2 \(shape) \(layout) \(flags) [\(i)]") }
            }
        }
    }

    func testForEachLineVisitsLinesInRowMajorOrderAndRanges() {
        var rng = F.Rand(4)
        for shape in F.shapes(&rng) where !shape.isEmpty {
            for layout in F.Layout.allCases {
                let v = F.view(shape, layout, &rng)
                let dense = contiguousStrides(shape)
                for dim in 0..<shape.count {
                    var outer = shape
                    outer.remove(at: dim)
                    var expected: [[Int]] = []
                    for idx in F.multiIndices(outer) {
                        var full = idx
                        full.insert(0, at: dim)
                        var dOff = 0
                        for d in 0..<full.count { dOff += full[d] * dense[d] }
                        expected.append([v.index(full), dOff])
                    }
                    var got: [[Int]] = []
                    forEachLine(shape: shape, dim: dim, strides: [v.strides, dense], offsets: [v.offset, 0]) { o in got.append([o[0], o[1]]) }
                    XCTAssertEqual(got, expected, "shape \(shape) \(layout) dim \(dim)")
                    // A sub-range of lines starts at the right place.
                    if expected.count >= 3 {
                        var part: [[Int]] = []
                        forEachLine(shape: shape, dim: dim, strides: [v.strides, dense], offsets: [v.offset, 0], lines: 1..<(expected.count - 1)) { o in
                            part.append([o[0], o[1]])
                        }
                        XCTAssertEqual(part, Array(expected[1..<(expected.count - 1)]), "range shape \(shape) \(layout) dim \(dim)")
                    }
                    var lines: [Int] = []
                    forEachLine(shape: shape, strides: v.strides, offset: v.offset, dim: dim) { _, l in lines.append(l) }
                    XCTAssertEqual(lines, Array(0..<expected.count))
                }
            }
        }
    }

    func testArgExtremeMatchesNaiveWithTiesAndNaN() {
        var rng = F.Rand(5)
        for shape in F.shapes(&rng) where !shape.isEmpty {
            for layout in F.Layout.allCases {
                var v = F.view(shape, layout, &rng) { r in r.tie() }
                // Sprinkle NaN into some views.
                if layout == .stepped, let first = F.multiIndices(shape).dropFirst(elementCount(shape) / 2).first {
                    v.buffer[v.index(first)] = .nan
                }
                for dim in 0..<shape.count where shape[dim] > 0 {
                    var outer = shape
                    outer.remove(at: dim)
                    let lines = elementCount(outer)
                    var values = [Double](repeating: 0, count: lines), idx = [Int64](repeating: -1, count: lines)
                    for findMax in [true, false] {
                        v.buffer.withUnsafeBufferPointer { b in
                            argExtremeAlongDim(b.baseAddress!, shape: shape, strides: v.strides, offset: v.offset, dim: dim,
                                               values: &values, indices: &idx, findMax: findMax)
                        }
                        for (l, o) in F.multiIndices(outer).enumerated() {
                            var best = 0
                            var bestV = Double.nan
                            for i in 0..<shape[dim] {
                                var full = o
                                full.insert(i, at: dim)
                                let x = v.at(full)
                                if i == 0 { bestV = x; continue }
                                if bestV.isNaN { break }
                                if x.isNaN || (findMax ? x > bestV : x < bestV) { bestV = x; best = i }
                            }
                            XCTAssertEqual(idx[l], Int64(best), "shape \(shape) \(layout) dim \(dim) max \(findMax) line \(l)")
                            XCTAssert(values[l] == bestV || (values[l].isNaN && bestV.isNaN))
                        }
                    }
                }
            }
        }
    }

    // MARK: - Scan

    func testCumsumMatchesNaiveForwardAndReverse() {
        var rng = F.Rand(6)
        for shape in F.shapes(&rng) where !shape.isEmpty {
            for layout in F.Layout.allCases {
                let v = F.view(shape, layout, &rng)
                for dim in 0..<shape.count {
                    for reverse in [false, true] {
                        var out = [Double](repeating: .nan, count: elementCount(shape))
                        v.buffer.withUnsafeBufferPointer { b in
                            out.withUnsafeMutableBufferPointer { o in
                                cumsumAlongDim(b.baseAddress!, shape: shape, strides: v.strides, offset: v.offset, dim: dim,
                                               o.baseAddress!, reverse: reverse)
                            }
                        }
                        for (linear, idx) in F.multiIndices(shape).enumerated() {
                            var ref = 0.0
                            let range = reverse ? idx[dim]..<shape[dim] : 0..<(idx[dim] + 1)
                            for i in range {
                                var full = idx
                                full[dim] = i
                                ref += v.at(full)
                            }
                            F.assertClose(out[linear], ref, "cumsum \(shape) \(layout) dim \(dim) reverse \(reverse) at \(idx)")
                        }
                    }
                }
            }
        }
    }

    func testCumsumIntegers() {
        let xs: [Int64] = [1, 2, 3, 4, 5, 6]
        var out = [Int64](repeating: 0, count: 6)
        xs.withUnsafeBufferPointer { b in
            cumsumAlongDim(b.baseAddress!, shape: [2, 3], strides: [3, 1], offset: 0, dim: 0, &out)
        }
        XCTAssertEqual(out, [1, 2, 3, 5, 7, 9])
    }
}
