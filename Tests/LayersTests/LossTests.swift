import Foundation
import XCTest
@testable import Layers
import TensorCore

final class LossTests: XCTestCase {
    private var logits: Tensor { NormsFixtures.tensor("ce.logits") }
    private var targets: Tensor { NormsFixtures.labels("ce.targets") }
    private var targetsIgnored: Tensor { NormsFixtures.labels("ce.targets_ign") }
    private var weight: Tensor { NormsFixtures.tensor("ce.weight") }

    // MARK: Hand-computed values

    func testCrossEntropyHandComputed() {
        // Uniform logits: ln C.
        let uniform = Loss.crossEntropy(logits: Tensor.zeros([3, 5], dtype: .float64), targets: Tensor([Int64(0), 2, 4]))
        XCTAssertEqual(uniform.item(), log(5.0), accuracy: 1e-12)
        // logits [0, ln 3], target 1: p = 3/4.
        let l = try! Tensor([0.0, log(3.0)], shape: [1, 2])
        let t = Tensor([Int64(1)])
        XCTAssertEqual(Loss.crossEntropy(logits: l, targets: t).item(), -log(0.75), accuracy: 1e-12)
        // Label smoothing 0.5 with C = 2: 0.5·(−ln 0.75) + 0.25·(−ln 0.25 − ln 0.75).
        XCTAssertEqual(Loss.crossEntropy(logits: l, targets: t, labelSmoothing: 0.5).item(), 0.5623351446188083, accuracy: 1e-12)
        // Weighted mean: Σ w_y ℓ / Σ w_y.
        let l2 = try! Tensor([0.0, log(3.0), 0, 0], shape: [2, 2])
        let t2 = Tensor([Int64(1), 0])
        let w = Tensor([2.0, 3.0])
        let expected = (3 * -log(0.75) + 2 * log(2.0)) / 5
        XCTAssertEqual(Loss.crossEntropy(logits: l2, targets: t2, weight: w).item(), expected, accuracy: 1e-12)
        // Ignored samples contribute nothing and are not counted.
        let t3 = Tensor([Int64(1), -1])
        XCTAssertEqual(Loss.crossEntropy(logits: l2, targets: t3, ignoreIndex: -1).item(), -log(0.75), accuracy: 1e-12)
        normsAssertClose(Loss.crossEntropy(logits: l2, targets: t3, ignoreIndex: -1, reduction: .none).doubles(), [-log(0.75), 0],
                         atol: 1e-15, rtol: 1e-12, "ignored sample is 0")
        // Every target ignored: mean is NaN, as PyTorch.
        XCTAssertTrue(Loss.crossEntropy(logits: l2, targets: Tensor([Int64(-1), -1]), ignoreIndex: -1).item().isNaN)
        // Int32 targets work too.
        XCTAssertEqual(Loss.crossEntropy(logits: l, targets: Tensor([Int32(1)])).item(), -log(0.75), accuracy: 1e-12)
    }

    func testRegressionAndBCEHandComputed() {
        let a = Tensor([1.0, 2.0]), z = Tensor([0.0, 0.0])
        XCTAssertEqual(Loss.mseLoss(a, z).item(), 2.5, accuracy: 1e-12)
        XCTAssertEqual(Loss.mseLoss(a, z, reduction: .sum).item(), 5, accuracy: 1e-12)
        XCTAssertEqual(Loss.mseLoss(a, z, reduction: .none).doubles(), [1, 4])
        let d = Tensor([0.5, -2.0])
        XCTAssertEqual(Loss.smoothL1Loss(d, z).doubles()[0], (0.125 + 1.5) / 2, accuracy: 1e-12)
        XCTAssertEqual(Loss.smoothL1Loss(d, z, beta: 0, reduction: .sum).item(), 2.5, accuracy: 1e-12)
        XCTAssertEqual(Loss.smoothL1Loss(d, z, beta: 4, reduction: .none).doubles(), [0.25 / 8, 4.0 / 8])
        // BCE: x = 0 gives ln 2; huge logits stay finite and exact.
        let x = Tensor([0.0, 1000, -1000, 1000]), y = Tensor([1.0, 0, 1, 1])
        let bce = Loss.binaryCrossEntropyWithLogits(x, y, reduction: .none).doubles()
        XCTAssertEqual(bce[0], log(2.0), accuracy: 1e-12)
        XCTAssertEqual(bce[1], 1000, accuracy: 1e-9)
        XCTAssertEqual(bce[2], 1000, accuracy: 1e-9)
        XCTAssertEqual(bce[3], 0, accuracy: 1e-12)
        // posWeight p scales the positive term: x = 0, y = 1 gives p·ln 2.
        XCTAssertEqual(Loss.binaryCrossEntropyWithLogits(Tensor([0.0]), Tensor([1.0]), posWeight: Tensor([3.0])).item(), 3 * log(2.0), accuracy: 1e-12)
        // The gradient at x = 0 is exactly sigmoid(0) − y.
        let (_, g) = valueAndGrad(of: [Tensor([0.0, 0.0])]) { xs in
            Loss.binaryCrossEntropyWithLogits(xs[0], Tensor([1.0, 0.25]), reduction: .sum)
        }
        normsAssertClose(g[0].doubles(), [-0.5, 0.25], atol: 1e-15, rtol: 0, "BCE gradient at 0")
        // Float32 large logits: finite.
        let big = Loss.binaryCrossEntropyWithLogits(Tensor([Float(200), -200]), Tensor([Float(0), 1]), reduction: .none).doubles()
        XCTAssertEqual(big, [200, 200])
    }

    // MARK: PyTorch fixtures

    func testCrossEntropyMatchesPyTorch() {
        let cases: [(String, Tensor)] = [
            ("ce.mean", Loss.crossEntropy(logits: logits, targets: targets)),
            ("ce.sum", Loss.crossEntropy(logits: logits, targets: targets, reduction: .sum)),
            ("ce.none", Loss.crossEntropy(logits: logits, targets: targets, reduction: .none)),
            ("ce.w_mean", Loss.crossEntropy(logits: logits, targets: targets, weight: weight)),
            ("ce.ign_mean", Loss.crossEntropy(logits: logits, targets: targetsIgnored, ignoreIndex: -100)),
            ("ce.ls_mean", Loss.crossEntropy(logits: logits, targets: targets, labelSmoothing: 0.1)),
            ("ce.all_mean", Loss.crossEntropy(logits: logits, targets: targetsIgnored, weight: weight, ignoreIndex: -100, labelSmoothing: 0.2)),
            ("ce.all_sum", Loss.crossEntropy(logits: logits, targets: targetsIgnored, weight: weight, ignoreIndex: -100, labelSmoothing: 0.2, reduction: .sum)),
            ("ce.all_none", Loss.crossEntropy(logits: logits, targets: targetsIgnored, weight: weight, ignoreIndex: -100, labelSmoothing: 0.2, reduction: .none)),
            ("ce.ign1_w_mean", Loss.crossEntropy(logits: logits, targets: targets, weight: weight, ignoreIndex: 1)),
        ]
        for (name, value) in cases {
            normsAssertClose(value, NormsFixtures.tensor(name), atol: 1e-12, rtol: 1e-12, name)
        }
        let (_, g) = valueAndGrad(of: [logits]) { xs in
            Loss.crossEntropy(logits: xs[0], targets: targetsIgnored, weight: weight, ignoreIndex: -100, labelSmoothing: 0.2)
        }
        normsAssertClose(g[0], NormsFixtures.tensor("ce.all_grad"), atol: 1e-12, rtol: 1e-10, "ce gradient")
        // [N, C, d] input with [N, d] targets.
        let l3 = NormsFixtures.tensor("ce3.logits"), t3 = NormsFixtures.labels("ce3.targets")
        normsAssertClose(Loss.crossEntropy(logits: l3, targets: t3, weight: weight, labelSmoothing: 0.1),
                         NormsFixtures.tensor("ce3.mean"), atol: 1e-12, rtol: 1e-12, "ce3 mean")
        normsAssertClose(Loss.crossEntropy(logits: l3, targets: t3, weight: weight, labelSmoothing: 0.1, reduction: .none),
                         NormsFixtures.tensor("ce3.none"), atol: 1e-12, rtol: 1e-12, "ce3 none")
        // Float32 logits agree to single precision.
        let f32 = Loss.crossEntropy(logits: logits.to(.float32), targets: targetsIgnored, weight: weight.to(.float32),
                                    ignoreIndex: -100, labelSmoothing: 0.2)
        XCTAssertEqual(f32.dtype, .float32)
        XCTAssertEqual(f32.item(), NormsFixtures.values("ce.all_mean")[0], accuracy: 1e-5)
    }

    func testNLLMatchesPyTorch() {
        let logp = NormsFixtures.tensor("nll.logp")
        normsAssertClose(Loss.nllLoss(logProbs: logp, targets: targetsIgnored, weight: weight, ignoreIndex: -100),
                         NormsFixtures.tensor("nll.w_ign_mean"), atol: 1e-12, rtol: 1e-12, "nll weighted ignore mean")
        normsAssertClose(Loss.nllLoss(logProbs: logp, targets: targets, reduction: .none),
                         NormsFixtures.tensor("nll.none"), atol: 1e-12, rtol: 1e-12, "nll none")
        normsAssertClose(Loss.nllLoss(logProbs: logp, targets: targets, weight: weight, reduction: .sum),
                         NormsFixtures.tensor("nll.sum"), atol: 1e-12, rtol: 1e-12, "nll weighted sum")
        // cross-entropy = nll ∘ logSoftmax.
        normsAssertClose(Loss.nllLoss(logProbs: logits.logSoftmax(dim: 1), targets: targets),
                         Loss.crossEntropy(logits: logits, targets: targets), atol: 1e-12, rtol: 1e-12, "nll(logSoftmax) == ce")
    }

    func testRegressionLossesMatchPyTorch() {
        let a = NormsFixtures.tensor("reg.a"), b = NormsFixtures.tensor("reg.b")
        normsAssertClose(Loss.mseLoss(a, b), NormsFixtures.tensor("mse.mean"), atol: 1e-12, rtol: 1e-12, "mse mean")
        normsAssertClose(Loss.mseLoss(a, b, reduction: .sum), NormsFixtures.tensor("mse.sum"), atol: 1e-12, rtol: 1e-12, "mse sum")
        normsAssertClose(Loss.mseLoss(a, b, reduction: .none), NormsFixtures.tensor("mse.none"), atol: 1e-12, rtol: 1e-12, "mse none")
        normsAssertClose(Loss.smoothL1Loss(a, b), NormsFixtures.tensor("sl1.b1_mean"), atol: 1e-12, rtol: 1e-12, "smoothL1 beta 1")
        normsAssertClose(Loss.smoothL1Loss(a, b, beta: 0.5, reduction: .none), NormsFixtures.tensor("sl1.b05_none"), atol: 1e-12, rtol: 1e-12, "smoothL1 beta 0.5")
        normsAssertClose(Loss.smoothL1Loss(a, b, beta: 0, reduction: .sum), NormsFixtures.tensor("sl1.b0_sum"), atol: 1e-12, rtol: 1e-12, "smoothL1 beta 0")
    }

    func testBCEWithLogitsMatchesPyTorch() {
        let x = NormsFixtures.tensor("bce.x"), t = NormsFixtures.tensor("bce.t")
        let pw = NormsFixtures.tensor("bce.pw"), w = NormsFixtures.tensor("bce.w")
        normsAssertClose(Loss.binaryCrossEntropyWithLogits(x, t), NormsFixtures.tensor("bce.mean"), atol: 1e-12, rtol: 1e-12, "bce mean")
        normsAssertClose(Loss.binaryCrossEntropyWithLogits(x, t, posWeight: pw), NormsFixtures.tensor("bce.pw_mean"), atol: 1e-12, rtol: 1e-12, "bce posWeight")
        normsAssertClose(Loss.binaryCrossEntropyWithLogits(x, t, weight: w, posWeight: pw, reduction: .none),
                         NormsFixtures.tensor("bce.w_pw_none"), atol: 1e-12, rtol: 1e-12, "bce weight posWeight none")
        normsAssertClose(Loss.binaryCrossEntropyWithLogits(x, t, reduction: .sum), NormsFixtures.tensor("bce.sum"), atol: 1e-12, rtol: 1e-12, "bce sum")
        let (_, g) = valueAndGrad(of: [x]) { xs in Loss.binaryCrossEntropyWithLogits(xs[0], t, posWeight: pw) }
        normsAssertClose(g[0], NormsFixtures.tensor("bce.pw_grad"), atol: 1e-12, rtol: 1e-10, "bce gradient")
    }

    // MARK: Bad targets

    func testBadTargetDetectionNamesLabelIndexAndClassCount() {
        let t = Tensor([Int64(0), 2, 5, -100, -3])
        XCTAssertNil(Loss.firstBadTarget(Tensor([Int64(0), 4, 2]), classes: 5, ignoreIndex: nil))
        let bad = Loss.firstBadTarget(t, classes: 5, ignoreIndex: -100)
        XCTAssertEqual(bad?.index, 2)
        XCTAssertEqual(bad?.label, 5)
        // Without an ignore index, the first bad label is the -100 at position 3.
        let bad2 = Loss.firstBadTarget(t, classes: 6, ignoreIndex: nil)
        XCTAssertEqual(bad2?.index, 3)
        XCTAssertEqual(bad2?.label, -100)
        // Negative labels that are not the ignore index are bad.
        XCTAssertEqual(Loss.firstBadTarget(Tensor([Int64(-3)]), classes: 6, ignoreIndex: -100)?.label, -3)
        let message = Loss.badTargetMessage(op: "crossEntropy", index: 2, label: 5, classes: 5, targetShape: [5], ignoreIndex: -100)
        XCTAssertTrue(message.contains("target 5"), message)
        XCTAssertTrue(message.contains("index 2"), message)
        XCTAssertTrue(message.contains("5 classes"), message)
        XCTAssertTrue(message.contains("ignoreIndex -100"), message)
    }

    // MARK: Gradients (finite differences, Float64)

    func testGradientsFiniteDifferences() {
        let l = normsRandn([5, 4], std: 2, seed: 1)
        let t = Tensor([Int64(0), 3, 1, 2, 1])
        let w = Tensor([0.5, 1.0, 2.0, 1.5])
        for (reduction, ls) in [(Loss.Reduction.mean, 0.0), (.mean, 0.3), (.sum, 0.1), (.none, 0.2)] {
            normsCheckGradients("crossEntropy \(reduction) ls \(ls)", [l]) { xs in
                Loss.crossEntropy(logits: xs[0], targets: t, weight: w, ignoreIndex: 1, labelSmoothing: ls, reduction: reduction)
            }
        }
        normsCheckGradients("crossEntropy [N, C, d]", [normsRandn([2, 3, 4], seed: 2)]) { xs in
            Loss.crossEntropy(logits: xs[0], targets: try! Tensor([Int64](arrayLiteral: 0, 1, 2, 1, 2, 0, 0, 1), shape: [2, 4]), labelSmoothing: 0.1)
        }
        normsCheckGradients("nllLoss", [normsRandn([5, 4], seed: 3)]) { xs in
            Loss.nllLoss(logProbs: xs[0], targets: t, weight: w)
        }
        let a = normsRandn([3, 4], std: 1.5, seed: 4), b = normsRandn([3, 4], seed: 5)
        normsCheckGradients("mseLoss", [a, b]) { xs in Loss.mseLoss(xs[0], xs[1]) }
        for beta in [0.0, 0.5, 1.0] {
            normsCheckGradients("smoothL1Loss beta \(beta)", [a, b]) { xs in Loss.smoothL1Loss(xs[0], xs[1], beta: beta, reduction: .sum) }
        }
        let x = normsRandn([4, 3], std: 3, seed: 6)
        let y = Tensor.rand([4, 3], dtype: .float64, generator: Generator(seed: 7))
        normsCheckGradients("bceWithLogits", [x, y]) { xs in Loss.binaryCrossEntropyWithLogits(xs[0], xs[1]) }
        normsCheckGradients("bceWithLogits posWeight weight", [x, y]) { xs in
            Loss.binaryCrossEntropyWithLogits(xs[0], xs[1], weight: Tensor([1.0, 0.5, 2.0]), posWeight: Tensor([0.5, 2.0, 3.0]), reduction: .none)
        }
    }
}
