import XCTest
import Foundation
import TensorCore

/// Tensor semantics: creation, value semantics, dtype conversion, IEEE specials,
/// broadcasting, comparisons/where and elementwise unary values.
final class TensorTests: XCTestCase {
    func t(_ values: [Double], _ shape: [Int]) -> Tensor { try! Tensor(values, shape: shape) }

    // MARK: Creation

    func testConstantFillsAndEye() {
        let z = Tensor.zeros([2, 3])
        XCTAssertEqual(z.shape, [2, 3])
        XCTAssertEqual(z.dtype, .float32)
        XCTAssertEqual(z.doubles(), [Double](repeating: 0, count: 6))
        XCTAssertEqual(Tensor.ones([4], dtype: .int32).scalars(as: Int32.self), [1, 1, 1, 1])
        XCTAssertEqual(Tensor.full([2, 2], 2.5, dtype: .float64).doubles(), [2.5, 2.5, 2.5, 2.5])
        XCTAssertEqual(Tensor.full([3], -7.9, dtype: .int64).scalars(as: Int64.self), [-7, -7, -7])   // truncation toward zero
        XCTAssertEqual(Tensor.full([2], 3, dtype: .bool).scalars(as: Bool.self), [true, true])
        XCTAssertEqual(Tensor.full([], 4).shape, [])
        XCTAssertEqual(Tensor.full([], 4).item(), 4)
        XCTAssertEqual(Tensor.zeros([0, 5]).count, 0)
        XCTAssertEqual(Tensor.eye(3).doubles(), [1, 0, 0, 0, 1, 0, 0, 0, 1])
        XCTAssertEqual(Tensor.eye(2, 3, dtype: .int64).scalars(as: Int64.self), [1, 0, 0, 0, 1, 0])
        XCTAssertEqual(Tensor.eye(3, 1).doubles(), [1, 0, 0])
        XCTAssertEqual(Tensor.eye(0).shape, [0, 0])
        let x = t([1, 2, 3], [3])
        XCTAssertEqual(x.zerosLike().doubles(), [0, 0, 0])
        XCTAssertEqual(x.onesLike().dtype, .float64)
    }

    func testArangeAndLinspace() throws {
        XCTAssertEqual(try Tensor.arange(5).doubles(), [0, 1, 2, 3, 4])
        XCTAssertEqual(try Tensor.arange(1, 2, step: 0.25, dtype: .float64).doubles(), [1, 1.25, 1.5, 1.75])
        XCTAssertEqual(try Tensor.arange(5, 0, step: -2, dtype: .int64).scalars(as: Int64.self), [5, 3, 1])
        XCTAssertEqual(try Tensor.arange(3, 3).shape, [0])
        XCTAssertEqual(try Tensor.arange(3, 1).shape, [0])                // wrong direction: empty, like torch
        XCTAssertEqual(try Tensor.arange(0, 1, step: 0.3, dtype: .float64).count, 4)   // 0, .3, .6, .9
        XCTAssertThrowsError(try Tensor.arange(0, 5, step: 0)) { e in
            let err = e as! TensorError
            XCTAssertEqual(err.kind, .argument)
            XCTAssertEqual(err.description, "arange: start 0.0, end 5.0, step 0.0: expected finite values and a non-zero step")
        }
        XCTAssertThrowsError(try Tensor.arange(0, .infinity)) { e in
            XCTAssertTrue((e as! TensorError).description.contains("end inf"))
        }
        XCTAssertEqual(try Tensor.linspace(0, 1, steps: 5, dtype: .float64).doubles(), [0, 0.25, 0.5, 0.75, 1])
        XCTAssertEqual(try Tensor.linspace(-1, 1, steps: 2).doubles(), [-1, 1])
        XCTAssertEqual(try Tensor.linspace(3, 9, steps: 1).doubles(), [3])
        XCTAssertEqual(try Tensor.linspace(3, 9, steps: 0).shape, [0])
        // Both ends exact even when the step is inexact.
        let l = try Tensor.linspace(0.1, 0.7, steps: 7, dtype: .float64).doubles()
        XCTAssertEqual(l.first, 0.1)
        XCTAssertEqual(l.last, 0.7)
        for (i, v) in l.enumerated() { XCTAssertEqual(v, 0.1 + 0.1 * Double(i), accuracy: 1e-15) }
        XCTAssertThrowsError(try Tensor.linspace(0, 1, steps: -1)) { e in
            XCTAssertTrue((e as! TensorError).description.contains("steps -1"))
        }
    }

    func testRandomCreationShapesRangesAndReproducibility() {
        let g = Generator(seed: 123)
        let u = Tensor.rand([100, 100], low: -2, high: 3, dtype: .float64, generator: g)
        XCTAssertEqual(u.shape, [100, 100])
        let uv = u.doubles()
        XCTAssertTrue(uv.allSatisfy { $0 >= -2 && $0 < 3 })
        XCTAssertEqual(uv.reduce(0, +) / Double(uv.count), 0.5, accuracy: 0.05)     // sd of the mean ≈ 0.014
        let n = Tensor.randn([10_000], mean: 1, std: 2, generator: g).doubles()
        let mean = n.reduce(0, +) / Double(n.count)
        let sd = (n.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n.count)).squareRoot()
        XCTAssertEqual(mean, 1, accuracy: 0.08)
        XCTAssertEqual(sd, 2, accuracy: 0.08)
        XCTAssertEqual(Tensor.rand([3], dtype: .bfloat16, generator: g).dtype, .bfloat16)
        // Same seed, same numbers.
        XCTAssertEqual(Tensor.randn([5], generator: Generator(seed: 9)).doubles(), Tensor.randn([5], generator: Generator(seed: 9)).doubles())
        XCTAssertNotEqual(Tensor.randn([5], generator: Generator(seed: 9)).doubles(), Tensor.randn([5], generator: Generator(seed: 10)).doubles())
        XCTAssertEqual(Tensor.rand([0, 3]).shape, [0, 3])
    }

    func testInitFromValuesAndCountMismatch() {
        let x = try! Tensor([Float(1), 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(x.dtype, .float32)
        XCTAssertEqual(x.strides, [3, 1])
        XCTAssertEqual(x.scalars(as: Float.self), [1, 2, 3, 4, 5, 6])
        XCTAssertThrowsError(try Tensor([1.0, 2, 3], shape: [2, 2])) { e in
            let err = e as! TensorError
            XCTAssertEqual(err.kind, .count)
            XCTAssertEqual(err.description, "Tensor: 3 values do not fill shape [2, 2] (4 elements)")
        }
        XCTAssertThrowsError(try Tensor([Int64](), shape: [1, -1])) { e in
            XCTAssertEqual((e as! TensorError).kind, .shape)
        }
        XCTAssertThrowsError(try Tensor(rows: [[1.0, 2], [3]])) { e in
            XCTAssertTrue((e as! TensorError).description.contains("row 1 has 1 values, expected 2"))
        }
        XCTAssertEqual(try! Tensor(rows: [[1.0, 2], [3, 4]]).shape, [2, 2])
        XCTAssertEqual(Tensor(scalar: Int32(7)).shape, [])
        XCTAssertEqual(Tensor([true, false]).dtype, .bool)
    }

    // MARK: Value semantics

    func testCopyOnWriteLeavesTheOriginalUnchanged() {
        let a = t([1, 2, 3], [3])
        var b = a
        XCTAssertTrue(b.storageBlock === a.storageBlock)
        b.add_(t([10, 10, 10], [3]))
        XCTAssertEqual(a.doubles(), [1, 2, 3])
        XCTAssertEqual(b.doubles(), [11, 12, 13])
        XCTAssertFalse(b.storageBlock === a.storageBlock)
        b.mul_(2)
        XCTAssertEqual(b.doubles(), [22, 24, 26])
        XCTAssertEqual(a.doubles(), [1, 2, 3])
    }

    func testUniqueTensorsMutateInPlace() {
        var c = Tensor.zeros([4], dtype: .float64)
        let before = ObjectIdentifier(c.storageBlock)
        c.add_(1.5)
        c.sub_(t([0.5, 0.5, 0.5, 0.5], [4]))
        XCTAssertEqual(ObjectIdentifier(c.storageBlock), before)
        XCTAssertEqual(c.doubles(), [1, 1, 1, 1])
    }

    func testViewsShareStorageButMutatingAViewCopies() {
        let base = t([0, 1, 2, 3, 4, 5], [2, 3])
        var row = base.narrowed(dim: 0, start: 1, length: 1)
        var tr = base.T
        XCTAssertTrue(row.storageBlock === base.storageBlock)
        XCTAssertTrue(tr.storageBlock === base.storageBlock)
        row.add_(100)
        tr.mul_(-1)
        XCTAssertEqual(base.doubles(), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(row.doubles(), [103, 104, 105])
        XCTAssertEqual(tr.doubles(), [0, -3, -1, -4, -2, -5])
        XCTAssertFalse(row.storageBlock === base.storageBlock)
        // Mutable pointer access also copies shared storage first.
        var alias = base
        alias.withMutableStoragePointer(Double.self) { $0[0] = 42 }
        XCTAssertEqual(base.doubles()[0], 0)
        XCTAssertEqual(alias.doubles()[0], 42)
    }

    // MARK: DType conversion

    func testHalfAndBFloat16RoundTrips() {
        let exact = t([0, 1, -2, 0.5, -0.25, 1024, 65504, .infinity, -.infinity], [9])
        XCTAssertEqual(exact.to(.float16).to(.float64).doubles(), exact.doubles())
        XCTAssertEqual(exact.to(.float32).to(.float16).to(.float32).doubles(), exact.doubles())
        XCTAssertEqual(exact.to(.bfloat16).to(.float64).doubles().prefix(6), exact.doubles().prefix(6))
        let third = t([1.0 / 3, -1e-3, 123.456], [3])
        for (v, r) in zip(third.doubles(), third.to(.float16).to(.float64).doubles()) {
            XCTAssertEqual(r, v, accuracy: Swift.abs(v) * 0x1p-11)
        }
        for (v, r) in zip(third.doubles(), third.to(.bfloat16).to(.float64).doubles()) {
            XCTAssertEqual(r, v, accuracy: Swift.abs(v) * 0x1p-8)
        }
        // Overflow and NaN.
        XCTAssertEqual(t([1e5], [1]).to(.float16).doubles(), [.infinity])
        XCTAssertTrue(t([.nan], [1]).to(.float16).doubles()[0].isNaN)
        XCTAssertTrue(t([.nan], [1]).to(.bfloat16).doubles()[0].isNaN)
        XCTAssertEqual(t([1e38], [1]).to(.bfloat16).doubles()[0], 1e38, accuracy: 1e36)
        // bfloat16 rounds to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7.
        XCTAssertEqual(t([1 + 0x1p-8, 1 + 3 * 0x1p-8], [2]).to(.bfloat16).doubles(), [1, 1 + 0x1p-6])
        // Non-contiguous source converts in row-major order.
        let m = t([1, 2, 3, 4, 5, 6], [2, 3]).T
        XCTAssertEqual(m.to(.float16).doubles(), [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(m.to(.int32).scalars(as: Int32.self), [1, 4, 2, 5, 3, 6])
    }

    func testIntegerConversionTruncatesAndBoolConversion() {
        let x = t([1.7, -1.7, 2.5, -0.2, 0], [5])
        XCTAssertEqual(x.to(.int64).scalars(as: Int64.self), [1, -1, 2, 0, 0])
        XCTAssertEqual(x.to(.int32).scalars(as: Int32.self), [1, -1, 2, 0, 0])
        XCTAssertEqual(x.to(.float32).to(.int64).scalars(as: Int64.self), [1, -1, 2, 0, 0])
        XCTAssertEqual(t([0, 200.9, 255], [3]).to(.uint8).scalars(as: UInt8.self), [0, 200, 255])
        XCTAssertEqual(t([0, 0.5, -2, .nan], [4]).to(.bool).scalars(as: Bool.self), [false, true, true, true])
        XCTAssertEqual(Tensor([true, false, true]).to(.float32).doubles(), [1, 0, 1])
        XCTAssertEqual(Tensor([Int64(-3), 7]).to(.float16).doubles(), [-3, 7])
        XCTAssertEqual(Tensor([Int32(5), -6]).to(.int64).scalars(as: Int64.self), [5, -6])
        XCTAssertEqual(t([3], [1]).to(.float64).dtype, .float64)
        // Integer → float → integer is exact below 2^24 for Float32.
        let big = Tensor([Int64(16_777_216), -16_777_215])
        XCTAssertEqual(big.to(.float32).to(.int64).scalars(as: Int64.self), [16_777_216, -16_777_215])
    }

    // MARK: IEEE specials

    func testNaNAndInfPropagate() {
        for dtype in [DType.float32, .float64] {
            let x = t([.nan, .infinity, -.infinity, 1], [4]).to(dtype)
            let y = t([1, -.infinity, 2, .nan], [4]).to(dtype)
            let sum = (x + y).doubles()
            XCTAssertTrue(sum[0].isNaN)
            XCTAssertTrue(sum[1].isNaN)                 // inf + -inf
            XCTAssertEqual(sum[2], -.infinity)
            XCTAssertTrue(sum[3].isNaN)
            let prod = (x * t([2, 0, 3, 1], [4]).to(dtype)).doubles()
            XCTAssertTrue(prod[0].isNaN)
            XCTAssertTrue(prod[1].isNaN)                // inf * 0
            XCTAssertEqual(prod[2], -.infinity)
            XCTAssertEqual(prod[3], 1)
            let r = x.relu().doubles()
            XCTAssertTrue(r[0].isNaN)
            XCTAssertEqual(Array(r[1...]), [.infinity, 0, 1])
            let e = x.exp().doubles()
            XCTAssertTrue(e[0].isNaN)
            XCTAssertEqual(Array(e[1..<3]), [.infinity, 0])
            XCTAssertEqual(e[3], Foundation.exp(1), accuracy: 1e-6)
            XCTAssertEqual(t([-1, 0], [2]).to(dtype).log().doubles().map { $0.isNaN ? 99 : $0 }, [99, -.infinity])
        }
        // Half types too (compute in Float32).
        let h = t([.nan, .infinity, -1], [3]).to(.float16).relu().doubles()
        XCTAssertTrue(h[0].isNaN)
        XCTAssertEqual(Array(h[1...]), [.infinity, 0])
    }

    // MARK: Broadcasting

    func testBroadcastShapeRulesAndErrors() throws {
        XCTAssertEqual(try ShapeRules.broadcast([3, 1, 4], [2, 1], op: "add"), [3, 2, 4])
        XCTAssertEqual(try ShapeRules.broadcast([], [2, 3], op: "add"), [2, 3])
        XCTAssertEqual(try ShapeRules.broadcast([5], [1], op: "add"), [5])
        XCTAssertEqual(try ShapeRules.broadcast([0, 1], [1, 5], op: "mul"), [0, 5])
        XCTAssertEqual(try ShapeRules.broadcast([1], [0], op: "mul"), [0])
        XCTAssertThrowsError(try ShapeRules.broadcast([2, 3], [4, 3], op: "add")) { e in
            let err = e as! TensorError
            XCTAssertEqual(err.kind, .shape)
            XCTAssertEqual(err.description, "add: [2, 3] and [4, 3] cannot be broadcast: dimension 0 is 2 vs 4")
        }
        XCTAssertThrowsError(try ShapeRules.broadcast([3], [2, 2], op: "mul")) { e in
            XCTAssertEqual((e as! TensorError).description, "mul: [3] and [2, 2] cannot be broadcast: dimension 1 is 3 vs 2")
        }
    }

    func testBroadcastValues() {
        let col = t([1, 2, 3], [3, 1]), row = t([10, 20], [2])
        let s = col + row
        XCTAssertEqual(s.shape, [3, 2])
        XCTAssertEqual(s.doubles(), [11, 21, 12, 22, 13, 23])
        XCTAssertEqual((row - col).doubles(), [9, 19, 8, 18, 7, 17])
        XCTAssertEqual((col * 2.0).doubles(), [2, 4, 6])
        XCTAssertEqual((1.0 / row).doubles(), [0.1, 0.05])
        // Non-contiguous operand broadcast against a vector.
        let m = t([1, 2, 3, 4, 5, 6], [2, 3]).T       // [[1, 4], [2, 5], [3, 6]]
        XCTAssertEqual((m * t([1, -1], [2])).doubles(), [1, -4, 2, -5, 3, -6])
        // Integer broadcasting.
        let ints = Tensor([Int64(1), 2, 3]).reshaped([3, 1]) + Tensor([Int64(10), 20])
        XCTAssertEqual(ints.scalars(as: Int64.self), [11, 21, 12, 22, 13, 23])
        // Empty broadcast.
        XCTAssertEqual((Tensor.zeros([0, 1]) + Tensor.ones([1, 4])).shape, [0, 4])
    }

    // MARK: Comparisons and where

    func testComparisons() {
        let a = t([1, 2, 3, .nan], [4]), b = t([2, 2, 2, 2], [4])
        XCTAssertEqual(a.eq(b).scalars(as: Bool.self), [false, true, false, false])
        XCTAssertEqual(a.ne(b).scalars(as: Bool.self), [true, false, true, true])
        XCTAssertEqual(a.lt(b).scalars(as: Bool.self), [true, false, false, false])
        XCTAssertEqual(a.le(b).scalars(as: Bool.self), [true, true, false, false])
        XCTAssertEqual(a.gt(b).scalars(as: Bool.self), [false, false, true, false])
        XCTAssertEqual(a.ge(2).scalars(as: Bool.self), [false, true, true, false])
        XCTAssertEqual(a.gt(b).dtype, .bool)
        // Broadcast and integer comparisons.
        let c = Tensor([Int32(1), 5]).reshaped([2, 1]).lt(Tensor([Int32(0), 3, 9]))
        XCTAssertEqual(c.shape, [2, 3])
        XCTAssertEqual(c.scalars(as: Bool.self), [false, true, true, false, false, true])
        XCTAssertEqual(Tensor([true, false]).eq(Tensor([true, true])).scalars(as: Bool.self), [true, false])
        XCTAssertEqual(t([0.5, 1.5], [2]).to(.bfloat16).gt(1).scalars(as: Bool.self), [false, true])
    }

    func testWhereBroadcastsAndSelects() {
        let cond = Tensor([true, false, true])
        XCTAssertEqual(Tensor.where(cond, t([1, 2, 3], [3]), t([-1, -2, -3], [3])).doubles(), [1, -2, 3])
        // Condition [2, 1], a [3], b scalar -> [2, 3].
        let c2 = Tensor([true, false]).reshaped([2, 1])
        let w = Tensor.where(c2, t([1, 2, 3], [3]), t([0], []))
        XCTAssertEqual(w.shape, [2, 3])
        XCTAssertEqual(w.doubles(), [1, 2, 3, 0, 0, 0])
        // Non-contiguous inputs and integer values.
        let m = t([1, 2, 3, 4], [2, 2]).T
        XCTAssertEqual(Tensor.where(m.gt(2), m, m * -1.0).doubles(), [-1, 3, -2, 4])
        let iw = Tensor.where(Tensor([false, true]), Tensor([Int64(1), 2]), Tensor([Int64(7), 8]))
        XCTAssertEqual(iw.scalars(as: Int64.self), [7, 2])
        // Gradients route by the condition.
        let a = t([1, 2], [2]).requiringGrad(), b = t([3, 4], [2]).requiringGrad()
        Tensor.where(Tensor([true, false]), a, b).backward(t([5, 6], [2]))
        XCTAssertEqual(a.grad!.doubles(), [5, 0])
        XCTAssertEqual(b.grad!.doubles(), [0, 6])
    }

    // MARK: Elementwise unary values

    func testUnaryValuesMatchScalarMath() {
        let values = [-2.5, -1, -0.3, 0, 0.3, 1, 2.5]
        let pos = [0.1, 0.5, 1, 2, 9]
        func erf(_ x: Double) -> Double { Foundation.erf(x) }
        let table: [(String, (Tensor) -> Tensor, (Double) -> Double, [Double])] = [
            ("neg", { -$0 }, { -$0 }, values),
            ("abs", { $0.abs() }, { Swift.abs($0) }, values),
            ("sign", { $0.sign() }, { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }, values),
            ("exp", { $0.exp() }, { Foundation.exp($0) }, values),
            ("log", { $0.log() }, { Foundation.log($0) }, pos),
            ("sqrt", { $0.sqrt() }, { $0.squareRoot() }, pos),
            ("rsqrt", { $0.rsqrt() }, { 1 / $0.squareRoot() }, pos),
            ("sin", { $0.sin() }, { Foundation.sin($0) }, values),
            ("cos", { $0.cos() }, { Foundation.cos($0) }, values),
            ("tanh", { $0.tanh() }, { Foundation.tanh($0) }, values),
            ("sigmoid", { $0.sigmoid() }, { 1 / (1 + Foundation.exp(-$0)) }, values),
            ("relu", { $0.relu() }, { Swift.max($0, 0) }, values),
            ("gelu", { $0.gelu() }, { $0 * 0.5 * (1 + erf($0 / 2.0.squareRoot())) }, values),
            ("leakyRelu", { $0.leakyRelu(0.2) }, { $0 > 0 ? $0 : 0.2 * $0 }, values),
            ("elu", { $0.elu(1.5) }, { $0 > 0 ? $0 : 1.5 * (Foundation.exp($0) - 1) }, values),
            ("clamp", { $0.clamp(min: -1, max: 0.5) }, { Swift.min(Swift.max($0, -1), 0.5) }, values),
            ("clampMin", { $0.clamp(min: 0.2) }, { Swift.max($0, 0.2) }, values),
        ]
        for (name, op, ref, xs) in table {
            let expected = xs.map(ref)
            // Float64, Float32 and a non-contiguous Float64 view (xs twice, every other element).
            let x64 = t(xs, [xs.count])
            func close(_ got: [Double], _ label: String) {
                XCTAssertEqual(got.count, expected.count, label)
                for (g, e) in zip(got, expected) { XCTAssertEqual(g, e, accuracy: 1e-14 * Swift.max(1, Swift.abs(e)), label) }
            }
            close(op(x64).doubles(), "\(name) float64")
            let f32 = op(x64.to(.float32))
            XCTAssertEqual(f32.dtype, .float32)
            for (g, e) in zip(f32.doubles(), expected) { XCTAssertEqual(g, e, accuracy: 1e-6 * Swift.max(1, Swift.abs(e)), "\(name) float32") }
            let interleaved = t(xs.flatMap { [$0, 99] }, [xs.count, 2]).narrowed(dim: 1, start: 0, length: 1).reshaped([xs.count, 1]).T
            XCTAssertFalse(interleaved.isContiguous)
            close(op(interleaved).doubles(), "\(name) non-contiguous")
            let h = op(x64.to(.bfloat16))
            XCTAssertEqual(h.dtype, .bfloat16)
            for (g, e) in zip(h.doubles(), expected) { XCTAssertEqual(g, e, accuracy: 0.02 * Swift.max(1, Swift.abs(e)), "\(name) bfloat16") }
        }
        // Large magnitudes stay finite where they should.
        XCTAssertEqual(t([-800, 800], [2]).sigmoid().doubles(), [0, 1])
        XCTAssertEqual(t([-50, 50], [2]).tanh().doubles(), [-1, 1])
    }
}
