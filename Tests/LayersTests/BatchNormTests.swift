import Foundation
import XCTest
@testable import Layers
import TensorCore

// MARK: - Shared test support for the normalization, loss, residual and embedding tests

/// PyTorch-produced reference values (Fixtures/make_fixtures.py writes Fixtures/norms_fixtures.json).
enum NormsFixtures {
    static let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("norms_fixtures.json")

    static let entries: [String: (shape: [Int], data: [Double])] = {
        guard let data = try? Data(contentsOf: url),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else {
            return [:]
        }
        var out: [String: (shape: [Int], data: [Double])] = [:]
        for (k, v) in json {
            let shape = (v["shape"] as? [NSNumber] ?? []).map(\.intValue)
            let values = (v["data"] as? [NSNumber] ?? []).map(\.doubleValue)
            out[k] = (shape, values)
        }
        return out
    }()

    static func entry(_ name: String) -> (shape: [Int], data: [Double]) {
        guard let e = entries[name] else {
            XCTFail("fixture '\(name)' missing from \(url.path)")
            return ([0], [])
        }
        return e
    }

    /// A Float64 tensor.
    static func tensor(_ name: String) -> Tensor {
        let e = entry(name)
        return try! Tensor(e.data, shape: e.shape)
    }

    /// An Int64 tensor (class labels are stored as floats).
    static func labels(_ name: String) -> Tensor {
        let e = entry(name)
        return try! Tensor(e.data.map { Int64($0) }, shape: e.shape)
    }

    static func values(_ name: String) -> [Double] { entry(name).data }
}

/// Elementwise |a − b| ≤ atol + rtol·|b|, naming the first bad element.
func normsAssertClose(_ a: [Double], _ b: [Double], atol: Double = 1e-9, rtol: Double = 1e-9, _ message: String = "",
                      file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else {
        XCTFail("\(message): \(a.count) values vs \(b.count) expected", file: file, line: line)
        return
    }
    for i in 0..<a.count {
        let ok = a[i] == b[i] || Swift.abs(a[i] - b[i]) <= atol + rtol * Swift.abs(b[i])
        if !ok {
            XCTFail("\(message): element \(i): \(a[i]) vs expected \(b[i])", file: file, line: line)
            return
        }
    }
}

func normsAssertClose(_ a: Tensor, _ b: Tensor, atol: Double = 1e-9, rtol: Double = 1e-9, _ message: String = "",
                      file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "\(message): shape", file: file, line: line)
    normsAssertClose(a.doubles(), b.doubles(), atol: atol, rtol: rtol, message, file: file, line: line)
}

/// Converts every Float32 parameter and buffer of `module` to Float64 (for exact comparisons
/// and finite differences).
func normsToFloat64(_ module: Module) {
    for (_, p) in module.namedParameters() { p.value = p.value.detached().to(.float64).requiringGrad() }
    for (_, b) in module.namedBuffers() where b.value.dtype == .float32 { b.value = b.value.to(.float64).detached() }
}

/// Finite-difference check in Float64: for a seeded random cotangent c, compares the autograd
/// gradient of <f(inputs), c> with central differences for every element of every input.
func normsCheckGradients(_ name: String, _ inputs: [Tensor], eps: Double = 1e-6, atol: Double = 1e-6, rtol: Double = 1e-5,
                         seed: UInt64 = 11, file: StaticString = #filePath, line: UInt = #line,
                         _ f: @escaping ([Tensor]) -> Tensor) {
    for x in inputs { precondition(x.dtype == .float64, "normsCheckGradients: inputs must be Float64") }
    let out0 = noGrad { f(inputs) }
    let cot = Tensor.randn(out0.shape, dtype: .float64, generator: Generator(seed: seed))
    let (_, analytic) = vjp(of: inputs, cotangent: cot) { f($0) }
    let c = cot.doubles()
    func objective(_ xs: [Tensor]) -> Double {
        let y = noGrad { f(xs) }.doubles()
        var s = 0.0
        for i in 0..<y.count { s += y[i] * c[i] }
        return s
    }
    for (k, x) in inputs.enumerated() {
        XCTAssertEqual(analytic[k].shape, x.shape, "\(name): gradient shape of input \(k)", file: file, line: line)
        let base = x.doubles(), a = analytic[k].doubles()
        for i in 0..<base.count {
            var plus = base, minus = base
            plus[i] += eps
            minus[i] -= eps
            var xp = inputs, xm = inputs
            xp[k] = try! Tensor(plus, shape: x.shape)
            xm[k] = try! Tensor(minus, shape: x.shape)
            let numeric = (objective(xp) - objective(xm)) / (2 * eps)
            if !(Swift.abs(numeric - a[i]) <= atol + rtol * Swift.abs(numeric)) {
                XCTFail("\(name): input \(k) element \(i): analytic \(a[i]) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

/// Seeded Float64 normal input.
func normsRandn(_ shape: [Int], mean: Double = 0, std: Double = 1, seed: UInt64) -> Tensor {
    Tensor.randn(shape, mean: mean, std: std, dtype: .float64, generator: Generator(seed: seed))
}

// MARK: - BatchNorm tests

final class BatchNormTests: XCTestCase {
    // MARK: Structure

    func testStateDictNamesShapesAndInitialValues() {
        let bn = BatchNorm2d(4)
        let sd = bn.stateDict()
        XCTAssertEqual(sd.map(\.0), ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])
        let byName = Dictionary(uniqueKeysWithValues: sd)
        XCTAssertEqual(byName["weight"]?.doubles(), [1, 1, 1, 1])
        XCTAssertEqual(byName["bias"]?.doubles(), [0, 0, 0, 0])
        XCTAssertEqual(byName["running_mean"]?.doubles(), [0, 0, 0, 0])
        XCTAssertEqual(byName["running_var"]?.doubles(), [1, 1, 1, 1])
        XCTAssertEqual(byName["running_var"]?.dtype, .float32)
        XCTAssertEqual(byName["num_batches_tracked"]?.dtype, .int64)
        XCTAssertEqual(byName["num_batches_tracked"]?.shape, [])
        XCTAssertEqual(bn.parameterCount, 8)
        XCTAssertTrue(bn.affine && bn.trackRunningStats)

        let noAffine = BatchNorm1d(3, affine: false)
        XCTAssertEqual(noAffine.stateDict().map(\.0), ["running_mean", "running_var", "num_batches_tracked"])
        XCTAssertEqual(noAffine.parameterCount, 0)
        let noStats = BatchNorm1d(3, trackRunningStats: false)
        XCTAssertEqual(noStats.stateDict().map(\.0), ["weight", "bias"])

        // Nested names, as in a PyTorch Sequential.
        let seq = Sequential(Linear(2, 3), BatchNorm1d(3))
        XCTAssertEqual(seq.stateDict().map(\.0), ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                                  "1.running_var", "1.num_batches_tracked"])
    }

    func testStateDictRoundTripGivesSameEvalOutput() throws {
        let a = BatchNorm2d(2)
        _ = a(normsRandn([3, 2, 2, 2], mean: 1, std: 2, seed: 1).to(.float32))
        a.eval()
        let b = BatchNorm2d(2)
        try b.loadStateDict(Dictionary(uniqueKeysWithValues: a.stateDict()))
        b.eval()
        XCTAssertEqual(b.numBatchesTracked?.value.item(), 1)
        let x = normsRandn([2, 2, 2, 2], seed: 2).to(.float32)
        XCTAssertEqual(a(x).doubles(), b(x).doubles())
    }

    // MARK: Hand-computed values

    func testHandComputedTrainingStepAndRunningStats() {
        let bn = BatchNorm1d(1)
        normsToFloat64(bn)
        let x = try! Tensor([1.0, 2, 3, 4], shape: [4, 1])
        let y = bn(x).doubles()
        // mean 2.5, biased variance 1.25, unbiased 5/3.
        let s = (1.25 + 1e-5).squareRoot()
        normsAssertClose(y, [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], "output")
        normsAssertClose(bn.runningMean!.value.doubles(), [0.25], "running_mean")
        normsAssertClose(bn.runningVar!.value.doubles(), [0.9 + 0.1 * 5 / 3], "running_var")
        XCTAssertEqual(bn.numBatchesTracked!.value.item(), 1)
        // Eval uses the running statistics.
        bn.eval()
        let e = bn(try! Tensor([2.0], shape: [1, 1])).item()
        XCTAssertEqual(e, (2 - 0.25) / (0.9 + 0.1 * 5 / 3 + 1e-5).squareRoot(), accuracy: 1e-12)
    }

    func testHandComputedL1AndLinf() {
        // One channel: x = [0, 1, 2, 5]; mean 2, |d| = [2, 1, 0, 3].
        let x = try! Tensor([0.0, 1, 2, 5], shape: [4, 1])
        let l1 = BatchNorm.statistics(x, kind: .l1, computeIn: .float64)
        XCTAssertEqual(l1.mean.item(), 2, accuracy: 1e-12)
        XCTAssertEqual(l1.scale.item(), (Double.pi / 2).squareRoot() * 1.5, accuracy: 1e-12)
        let c4 = BatchNorm.linfConstant(4)
        XCTAssertEqual(BatchNorm.statistics(x, kind: .linf(topK: 1), computeIn: .float64).scale.item(), c4 * 3, accuracy: 1e-12)
        XCTAssertEqual(BatchNorm.statistics(x, kind: .linf(topK: 2), computeIn: .float64).scale.item(), c4 * 2.5, accuracy: 1e-12)
        // Default k (10) is clamped to n = 4: the mean of all |d|.
        XCTAssertEqual(BatchNorm.statistics(x, kind: .linf(topK: nil), computeIn: .float64).scale.item(), c4 * 1.5, accuracy: 1e-12)
        XCTAssertEqual(BatchNorm.statistics(x, kind: .l2, computeIn: .float64).scale.item(), 3.5.squareRoot(), accuracy: 1e-12)

        let bn = BatchNorm1d(1, norm: .linf(topK: 1))
        normsToFloat64(bn)
        let y = bn(x).doubles()
        let s = c4 * 3
        normsAssertClose(y, [-2 / (s + 1e-5), -1 / (s + 1e-5), 0, 3 / (s + 1e-5)], "linf output")
        normsAssertClose(bn.runningVar!.value.doubles(), [0.9 + 0.1 * s * s], "running_var stores s²")
        bn.eval()
        let e = bn(try! Tensor([1.0], shape: [1, 1])).item()
        XCTAssertEqual(e, (1 - 0.2) / ((0.9 + 0.1 * s * s).squareRoot() + 1e-5), accuracy: 1e-12)
    }

    func testLinfConstantValues() {
        XCTAssertEqual(BatchNorm.linfConstant(2), 1.3108878255967675, accuracy: 1e-14)
        XCTAssertEqual(BatchNorm.linfConstant(10), 0.7192343426424046, accuracy: 1e-14)
        XCTAssertEqual(BatchNorm.linfConstant(32), 0.5862468577822523, accuracy: 1e-14)
        XCTAssertEqual(BatchNorm.linfConstant(4096), 0.3784207194928485, accuracy: 1e-14)
        XCTAssertEqual(BatchNorm.linfConstant(65536), 0.3277219563991919, accuracy: 1e-14)
        XCTAssertEqual(BatchNorm.topK(.linf(topK: nil), count: 100), 10)
        XCTAssertEqual(BatchNorm.topK(.linf(topK: nil), count: 6), 6)
        XCTAssertEqual(BatchNorm.topK(.linf(topK: 3), count: 100), 3)
    }

    // MARK: PyTorch fixtures

    /// Runs the fixture protocol of make_fixtures.py: set weight/bias, train on each x (checking
    /// outputs and, for step 0, gradients), compare running stats, then eval.
    private func runFixture(_ prefix: String, _ bn: BatchNormBase, steps: Int, dtype: DType = .float64, tol: Double = 1e-9,
                            file: StaticString = #filePath, line: UInt = #line) {
        if dtype == .float64 { normsToFloat64(bn) }
        if bn.affine {
            bn.weight!.value = NormsFixtures.tensor(prefix + ".weight").to(dtype).requiringGrad()
            bn.bias!.value = NormsFixtures.tensor(prefix + ".bias").to(dtype).requiringGrad()
        }
        bn.train()
        for i in 0..<steps {
            let x = NormsFixtures.tensor("\(prefix).x\(i)").to(dtype)
            if i == 0 {
                let cot = NormsFixtures.tensor(prefix + ".cot").to(dtype)
                var inputs = [x]
                if bn.affine { inputs += [bn.weight!.value, bn.bias!.value] }
                let (y, grads) = vjp(of: inputs, cotangent: cot) { xs in
                    if bn.affine {
                        bn.weight!.value = xs[1]
                        bn.bias!.value = xs[2]
                    }
                    return bn(xs[0])
                }
                normsAssertClose(y, NormsFixtures.tensor("\(prefix).train0"), atol: tol, rtol: tol, "\(prefix) train step 0", file: file, line: line)
                normsAssertClose(grads[0], NormsFixtures.tensor(prefix + ".grad_x"), atol: tol, rtol: tol, "\(prefix) grad x", file: file, line: line)
                if bn.affine {
                    normsAssertClose(grads[1], NormsFixtures.tensor(prefix + ".grad_weight"), atol: tol, rtol: tol, "\(prefix) grad weight", file: file, line: line)
                    normsAssertClose(grads[2], NormsFixtures.tensor(prefix + ".grad_bias"), atol: tol, rtol: tol, "\(prefix) grad bias", file: file, line: line)
                }
            } else {
                normsAssertClose(bn(x), NormsFixtures.tensor("\(prefix).train\(i)"), atol: tol, rtol: tol, "\(prefix) train step \(i)", file: file, line: line)
            }
        }
        normsAssertClose(bn.runningMean!.value, NormsFixtures.tensor(prefix + ".running_mean"), atol: tol, rtol: tol, "\(prefix) running_mean", file: file, line: line)
        normsAssertClose(bn.runningVar!.value, NormsFixtures.tensor(prefix + ".running_var"), atol: tol, rtol: tol, "\(prefix) running_var", file: file, line: line)
        XCTAssertEqual(bn.numBatchesTracked!.value.item(), NormsFixtures.values(prefix + ".num_batches_tracked")[0], file: file, line: line)
        bn.eval()
        normsAssertClose(bn(NormsFixtures.tensor(prefix + ".eval_x").to(dtype)), NormsFixtures.tensor(prefix + ".eval"),
                         atol: tol, rtol: tol, "\(prefix) eval", file: file, line: line)
    }

    func testBatchNorm1dMatchesPyTorchTwoStepsThenEval() {
        runFixture("bn1d", BatchNorm1d(3), steps: 2)
    }

    func testBatchNorm1dOnNCLMatchesPyTorch() {
        runFixture("bn1d3", BatchNorm1d(3, momentum: 0.3), steps: 1)
    }

    func testBatchNorm2dMatchesPyTorchTwoStepsThenEval() {
        runFixture("bn2d", BatchNorm2d(2), steps: 2)
    }

    func testBatchNorm2dFloat32MatchesPyTorch() {
        runFixture("bn2d", BatchNorm2d(2), steps: 2, dtype: .float32, tol: 2e-5)
    }

    func testCumulativeMovingAverageWithoutAffineMatchesPyTorch() {
        runFixture("bncma", BatchNorm1d(2, momentum: nil, affine: false), steps: 2)
    }

    func testL1AndLinfMatchNumpyReference() {
        let x = NormsFixtures.tensor("lp.x")
        let kinds: [(String, BatchNormKind)] = [("l1", .l1), ("linf1", .linf(topK: 1)), ("linf3", .linf(topK: 3)), ("linf", .linf(topK: nil))]
        for (name, kind) in kinds {
            let stats = BatchNorm.statistics(x, kind: kind, computeIn: .float64)
            normsAssertClose(stats.mean.doubles(), NormsFixtures.values("lp.mean"), atol: 1e-12, rtol: 1e-12, "\(name) mean")
            normsAssertClose(stats.scale.doubles(), NormsFixtures.values("lp.\(name).scale"), atol: 1e-12, rtol: 1e-12, "\(name) scale")
            let bn = BatchNorm1d(2, norm: kind)
            normsToFloat64(bn)
            normsAssertClose(bn(x), NormsFixtures.tensor("lp.\(name).out"), atol: 1e-10, rtol: 1e-10, "\(name) output")
            normsAssertClose(bn.runningVar!.value.doubles(), NormsFixtures.values("lp.\(name).running_var"), atol: 1e-12, rtol: 1e-12, "\(name) running_var")
            normsAssertClose(bn.runningMean!.value.doubles(), NormsFixtures.values("lp.mean").map { 0.1 * $0 }, atol: 1e-12, rtol: 1e-12, "\(name) running_mean")
        }
    }

    /// The layer (built from Tensor ops) against `BatchNorm.statistics` (an explicit loop) on
    /// tiny and odd shapes, including a non-contiguous input.
    func testTinyAndOddShapesMatchExplicitStatistics() {
        let kinds: [BatchNormKind] = [.l2, .l1, .linf(topK: 1), .linf(topK: 2), .linf(topK: nil)]
        let shapes: [[Int]] = [[2, 1], [2, 3], [3, 2, 1], [5, 3, 7], [2, 1, 1, 1], [3, 2, 1, 3]]
        for kind in kinds {
            for shape in shapes {
                for contiguous in [true, false] {
                    var x = normsRandn(shape, mean: -1, std: 3, seed: UInt64(shape.reduce(0, +)))
                    if !contiguous {
                        // Same values, transposed storage: a strided view.
                        x = x.transposed(0, 1).contiguous().transposed(0, 1)
                        XCTAssertTrue(!x.isContiguous || shape[0] == 1 || shape[1] == 1, "\(shape) should be strided")
                    }
                    let bn: BatchNormBase = shape.count == 4 ? BatchNorm2d(shape[1], norm: kind) : BatchNorm1d(shape[1], norm: kind)
                    normsToFloat64(bn)
                    let y = bn(x)
                    let stats = BatchNorm.statistics(x, kind: kind, computeIn: .float64)
                    var bshape = [Int](repeating: 1, count: shape.count)
                    bshape[1] = shape[1]
                    let mu = stats.mean.reshaped(bshape), s = stats.scale.reshaped(bshape)
                    let expected = kind == .l2 ? (x - mu) / (s * s + 1e-5).sqrt() : (x - mu) / (s + 1e-5)
                    normsAssertClose(y, expected, atol: 1e-10, rtol: 1e-10, "\(kind) \(shape) contiguous \(contiguous)")
                }
            }
        }
    }

    // MARK: Modes

    func testEvalUsesRunningStatsTrainUsesBatchStats() {
        let bn = BatchNorm2d(3)
        normsToFloat64(bn)
        bn.weight!.value = Tensor([0.5, 1.0, 2.0]).requiringGrad()
        bn.bias!.value = Tensor([0.1, 0.0, -0.1]).requiringGrad()
        let x = normsRandn([4, 3, 2, 2], mean: 3, std: 2, seed: 5)
        let trainOut = bn(x)
        // Train mode: per-channel output mean ≈ bias and biased std ≈ weight.
        let m = trainOut.mean(dims: [0, 2, 3]).doubles()
        normsAssertClose(m, [0.1, 0.0, -0.1], atol: 1e-9, rtol: 0, "train output mean")
        bn.eval()
        let evalOut = bn(x)
        let rm = bn.runningMean!.value.reshaped([1, 3, 1, 1]), rv = bn.runningVar!.value.reshaped([1, 3, 1, 1])
        let expected = (x - rm) / (rv + 1e-5).sqrt() * bn.weight!.value.reshaped([1, 3, 1, 1]) + bn.bias!.value.reshaped([1, 3, 1, 1])
        normsAssertClose(evalOut, expected, atol: 1e-12, rtol: 1e-12, "eval formula")
        XCTAssertGreaterThan(Swift.abs(evalOut.doubles()[0] - trainOut.doubles()[0]), 0.1, "eval must differ from train here")
        // Eval does not update the running statistics.
        XCTAssertEqual(bn.numBatchesTracked!.value.item(), 1)
        XCTAssertEqual(bn.runningMean!.value.doubles(), rm.doubles())
        // Without running statistics eval mode normalises with batch statistics.
        let noStats = BatchNorm2d(3, trackRunningStats: false)
        normsToFloat64(noStats)
        let t = noStats(x)
        noStats.eval()
        normsAssertClose(noStats(x), t, atol: 0, rtol: 0, "no running stats: eval == train")
    }

    // MARK: Ghost batches

    func testGhostBatchesEqualPerChunkNormalisation() {
        let kinds: [BatchNormKind] = [.l2, .l1, .linf(topK: 2), .linf(topK: nil)]
        for kind in kinds {
            // [7, 2, 2, 2] split 3 + 3 + 1 (the last ghost batch has 1 sample of 4 elements per channel).
            let x = normsRandn([7, 2, 2, 2], mean: 1, std: 2, seed: 9)
            let ghost = BatchNorm2d(2, norm: kind, ghostBatchSize: 3)
            normsToFloat64(ghost)
            let y = ghost(x)
            var expectedOut: [Tensor] = [], chunkMeans: [[Double]] = [], chunkSpreads: [[Double]] = []
            for (start, len) in [(0, 3), (3, 3), (6, 1)] {
                let single = BatchNorm2d(2, momentum: 1, norm: kind)
                normsToFloat64(single)
                expectedOut.append(single(x.narrowed(dim: 0, start: start, length: len)))
                chunkMeans.append(single.runningMean!.value.doubles())
                chunkSpreads.append(single.runningVar!.value.doubles())
            }
            normsAssertClose(y, Tensor.cat(expectedOut, dim: 0), atol: 1e-12, rtol: 1e-12, "\(kind) ghost output")
            let avgMean = (0..<2).map { c in chunkMeans.map { $0[c] }.reduce(0, +) / 3 }
            let avgSpread = (0..<2).map { c in chunkSpreads.map { $0[c] }.reduce(0, +) / 3 }
            normsAssertClose(ghost.runningMean!.value.doubles(), avgMean.map { 0.1 * $0 }, atol: 1e-12, rtol: 1e-12, "\(kind) ghost running_mean")
            normsAssertClose(ghost.runningVar!.value.doubles(), avgSpread.map { 0.9 + 0.1 * $0 }, atol: 1e-12, rtol: 1e-12, "\(kind) ghost running_var")
        }
        // A ghost batch at least as large as the batch is ordinary batch norm.
        let x = normsRandn([5, 3], seed: 4)
        let a = BatchNorm1d(3, ghostBatchSize: 8), b = BatchNorm1d(3)
        normsToFloat64(a)
        normsToFloat64(b)
        normsAssertClose(a(x), b(x), atol: 0, rtol: 0, "ghost >= N")
    }

    // MARK: Statistics on Gaussian data

    func testL1AndLinfScalesOnGaussianData() {
        let sigma = 2.5, n = 65536
        let x = normsRandn([n, 1], mean: 4, std: sigma, seed: 21)
        let sampleStd = BatchNorm.statistics(x, kind: .l2, computeIn: .float64).scale.item()
        XCTAssertEqual(sampleStd, sigma, accuracy: 0.02 * sigma)
        // L1: sqrt(pi/2) * mean |d| estimates sigma (within a few percent at large n).
        let l1 = BatchNorm.statistics(x, kind: .l1, computeIn: .float64).scale.item()
        XCTAssertEqual(l1 / sampleStd, 1, accuracy: 0.02)
        // L∞ with the paper's C(n): proportional to sigma, but C(n)·max|d| ≈ 1.46σ at n = 65536
        // (the constant averages bounds on the expected maximum; the affine weight absorbs it).
        let linfMax = BatchNorm.statistics(x, kind: .linf(topK: 1), computeIn: .float64).scale.item()
        XCTAssertEqual(linfMax / sampleStd, 1.46, accuracy: 0.2)
        let linf10 = BatchNorm.statistics(x, kind: .linf(topK: nil), computeIn: .float64).scale.item()
        XCTAssertEqual(linf10 / sampleStd, 1.32, accuracy: 0.12)
        XCTAssertLessThan(linf10, linfMax)
        // Equivariance: statistics(a·x + b) = (a·mean + b, a·scale) for every kind.
        for kind: BatchNormKind in [.l2, .l1, .linf(topK: 1), .linf(topK: nil)] {
            let small = normsRandn([200, 2], seed: 3)
            let s0 = BatchNorm.statistics(small, kind: kind, computeIn: .float64)
            let s1 = BatchNorm.statistics(small * 3 - 7, kind: kind, computeIn: .float64)
            normsAssertClose(s1.scale.doubles(), s0.scale.doubles().map { 3 * $0 }, atol: 1e-10, rtol: 1e-10, "\(kind) scale equivariance")
            normsAssertClose(s1.mean.doubles(), s0.mean.doubles().map { 3 * $0 - 7 }, atol: 1e-10, rtol: 1e-10, "\(kind) mean equivariance")
        }
    }

    /// The paper's low-precision claim: with deviations of a few hundred, Float16 L2 statistics
    /// overflow (d² > 65504) while L1 and L∞ stay finite and close to Float32.
    func testFloat16StatisticsL2OverflowsL1AndLinfStayFinite() {
        let x = normsRandn([4096, 2], mean: 10, std: 300, seed: 33).to(.float32)
        for kind: BatchNormKind in [.l2, .l1, .linf(topK: 1), .linf(topK: nil)] {
            let ref = BatchNorm.statistics(x, kind: kind, computeIn: .float32)
            let half = BatchNorm.statistics(x, kind: kind, computeIn: .float16)
            XCTAssertEqual(half.scale.dtype, .float16)
            let refScale = ref.scale.doubles(), halfScale = half.scale.doubles()
            XCTAssertTrue(refScale.allSatisfy { $0.isFinite && $0 > 100 }, "\(kind): Float32 scale \(refScale)")
            // The mean (a pairwise sum of x/n) is fine in Float16 for every kind.
            for (h, r) in zip(half.mean.doubles(), ref.mean.doubles()) {
                XCTAssertEqual(h, r, accuracy: 0.01 * 300, "\(kind) Float16 mean")
            }
            if kind == .l2 {
                XCTAssertTrue(halfScale.allSatisfy { $0 == .infinity }, "L2 in Float16 should overflow, got \(halfScale)")
            } else {
                for (h, r) in zip(halfScale, refScale) {
                    XCTAssertTrue(h.isFinite, "\(kind) Float16 scale \(h)")
                    XCTAssertEqual(h / r, 1, accuracy: 0.01, "\(kind) Float16 scale \(h) vs Float32 \(r)")
                }
            }
        }
        // Ten times smaller deviations keep every d² in range: L2 is finite again.
        let small = BatchNorm.statistics(x / 10, kind: .l2, computeIn: .float16).scale.doubles()
        let smallRef = BatchNorm.statistics(x / 10, kind: .l2, computeIn: .float32).scale.doubles()
        for (h, r) in zip(small, smallRef) { XCTAssertEqual(h / r, 1, accuracy: 0.01) }
    }

    // MARK: Gradients (finite differences, Float64)

    func testGradientsAllKindsTrainMode() {
        let kinds: [BatchNormKind] = [.l2, .l1, .linf(topK: 1), .linf(topK: 3), .linf(topK: nil)]
        for kind in kinds {
            for shape in [[6, 3], [4, 3, 5]] {
                let bn = BatchNorm1d(3, norm: kind)
                normsToFloat64(bn)
                let x = normsRandn(shape, mean: 0.5, std: 1.5, seed: UInt64(shape.count))
                let w = normsRandn([3], mean: 1, std: 0.3, seed: 7), b = normsRandn([3], seed: 8)
                normsCheckGradients("BatchNorm1d \(kind) \(shape)", [x, w, b]) { xs in
                    bn.weight!.value = xs[1]
                    bn.bias!.value = xs[2]
                    return bn(xs[0])
                }
            }
        }
    }

    func testGradientsBatchNorm2dGhostAndEval() {
        for kind: BatchNormKind in [.l2, .l1, .linf(topK: 2)] {
            let bn = BatchNorm2d(2, norm: kind, ghostBatchSize: 2)
            normsToFloat64(bn)
            let x = normsRandn([5, 2, 2, 3], std: 2, seed: 12)
            normsCheckGradients("BatchNorm2d ghost \(kind)", [x]) { bn($0[0]) }
            bn.eval()
            let w = normsRandn([2], mean: 1, std: 0.3, seed: 13)
            normsCheckGradients("BatchNorm2d eval \(kind)", [x, w]) { xs in
                bn.weight!.value = xs[1]
                return bn(xs[0])
            }
        }
    }
}
