import Foundation
import XCTest
import Layers
import Models
import TensorCore
@testable import Training

/// Dynamic loss scaling (Micikevicius et al. 2018) and the mixed-precision step helper.
final class MixedPrecisionTests: XCTestCase {
    /// A parameter whose gradient is `values` (Float32).
    func parameter(grad values: [Float]) -> Parameter {
        let p = Parameter(Tensor.zeros([values.count]))
        p.value.grad = Tensor(values)
        return p
    }

    // MARK: Settings and validation

    func testDefaultsMatchTorchGradScaler() throws {
        let s = try LossScaler()
        XCTAssertEqual(s.scale, 65536)
        XCTAssertEqual(s.growthFactor, 2)
        XCTAssertEqual(s.backoffFactor, 0.5)
        XCTAssertEqual(s.growthInterval, 2000)
        XCTAssertEqual(s.steps, 0)
        XCTAssertEqual(s.skippedSteps, 0)
    }

    func testInvalidSettingsThrowNamedErrors() {
        func message(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch let e as MixedPrecisionError { return e.description } catch { return "\(error)" }
        }
        XCTAssertEqual(message { _ = try LossScaler(initScale: 0) },
                       "LossScaler: initScale 0.0: expected a positive value finite in Float32 (at most \(Float.greatestFiniteMagnitude))")
        XCTAssertEqual(message { _ = try LossScaler(initScale: 1e39) }?.hasPrefix("LossScaler: initScale 1e+39"), true)
        XCTAssertEqual(message { _ = try LossScaler(growthFactor: 1) }, "LossScaler: growthFactor 1.0: expected a finite value > 1")
        XCTAssertEqual(message { _ = try LossScaler(backoffFactor: 1) }, "LossScaler: backoffFactor 1.0: expected a value in (0, 1)")
        XCTAssertEqual(message { _ = try LossScaler(backoffFactor: 0) }, "LossScaler: backoffFactor 0.0: expected a value in (0, 1)")
        XCTAssertEqual(message { _ = try LossScaler(growthInterval: 0) }, "LossScaler: growthInterval 0: expected a positive number of steps")
        XCTAssertEqual(message { _ = try MixedPrecision(parsing: "fp8") }, "--precision: 'fp8': expected fp32, fp16 or bf16")
    }

    func testPrecisionFlags() throws {
        XCTAssertEqual(try MixedPrecision(parsing: "fp32"), .off)
        XCTAssertEqual(try MixedPrecision(parsing: "FP16").precision, .float16)
        XCTAssertEqual(try MixedPrecision(parsing: "bfloat16").precision, .bfloat16)
        for f in ["fp32", "fp16", "bf16"] { XCTAssertEqual(try MixedPrecision(parsing: f).flag, f) }
        XCTAssertNil(MixedPrecision.off.policy)
        XCTAssertEqual(MixedPrecision(.bfloat16, halfBatchNorm: true).policy, AutocastPolicy(.bfloat16, halfBatchNorm: true))
        XCTAssertNotNil(try MixedPrecision(.float16).makeLossScaler())
        XCTAssertNil(try MixedPrecision(.bfloat16).makeLossScaler(), "BFloat16 has Float32's range: no scaling")
        XCTAssertNil(try MixedPrecision.off.makeLossScaler())
    }

    // MARK: Scaling, unscaling, finiteness

    func testScaleAndUnscaleAreExactForPowersOfTwo() throws {
        var s = try LossScaler()
        let loss = Tensor(scalar: Float(0.7))
        XCTAssertEqual(s.scale(loss).item(), Double(Float(0.7)) * 65536)
        let values: [Float] = [1.5e-3, -2, 3e-8, 0, 7]
        let p = parameter(grad: values.map { $0 * 65536 })
        XCTAssertTrue(s.unscale([p]))
        XCTAssertEqual(p.grad?.scalars(as: Float.self), values)
        XCTAssertFalse(s.foundNonFinite)
    }

    func testAllFiniteFindsEveryNonFiniteElement() {
        for n in [0, 1, 2, 255, 256, 257, 1000] {
            let clean = (0..<n).map { Float($0) - 100 }
            XCTAssertTrue(LossScaler.allFinite(Tensor(clean)), "n \(n)")
            for pos in Set([0, n / 2, n - 1]) where n > 0 {
                for bad in [Float.infinity, -Float.infinity, Float.nan] {
                    var v = clean
                    v[pos] = bad
                    XCTAssertFalse(LossScaler.allFinite(Tensor(v)), "n \(n), \(bad) at \(pos)")
                }
            }
        }
        // Strided view and a half tensor.
        var v = [Float](repeating: 1, count: 12)
        v[7] = .nan
        let t = try! Tensor(v, shape: [3, 4]).transposed(0, 1)
        XCTAssertFalse(LossScaler.allFinite(t))
        XCTAssertTrue(LossScaler.allFinite(Tensor([Float(65504)]).to(.float16)))
        XCTAssertFalse(LossScaler.allFinite(Tensor([Float(70000)]).to(.float16)), "70000 overflows Float16 to inf")
    }

    // MARK: Dynamic scale

    func testGrowsAfterIntervalCleanSteps() throws {
        var s = try LossScaler(initScale: 8, growthInterval: 3)
        var applied = 0
        for step in 1...7 {
            let p = parameter(grad: [1, 2])
            XCTAssertTrue(s.step([p]) { applied += 1 })
            s.update()
            // Growth after steps 3 and 6.
            XCTAssertEqual(s.scale, step >= 6 ? 32 : (step >= 3 ? 16 : 8), "after step \(step)")
            XCTAssertEqual(s.growthTracker, step % 3)
        }
        XCTAssertEqual(applied, 7)
        XCTAssertEqual(s.steps, 7)
        XCTAssertEqual(s.skippedSteps, 0)
    }

    func testOverflowSkipsStepAndBacksOff() throws {
        var s = try LossScaler(initScale: 1024, growthInterval: 2)
        var applied = 0
        // One clean step: tracker 1.
        s.step([parameter(grad: [1])]) { applied += 1 }
        s.update()
        XCTAssertEqual(s.growthTracker, 1)
        // Inject inf into one of several gradients, then NaN.
        for bad in [Float.infinity, Float.nan] {
            let ps = [parameter(grad: [1, 2]), parameter(grad: [3, bad, 4])]
            XCTAssertFalse(s.step(ps) { applied += 1 }, "step with \(bad) must be skipped")
            XCTAssertTrue(s.foundNonFinite)
            s.update()
        }
        XCTAssertEqual(applied, 1, "the optimizer ran only for the clean step")
        XCTAssertEqual(s.scale, 256, "1024 backed off twice")
        XCTAssertEqual(s.growthTracker, 0)
        XCTAssertEqual(s.steps, 3)
        XCTAssertEqual(s.skippedSteps, 2)
        // Two clean steps grow it again.
        for _ in 0..<2 { s.step([parameter(grad: [1])]) { applied += 1 }; s.update() }
        XCTAssertEqual(s.scale, 512)
    }

    func testScaleStaysWithinFloat32() throws {
        var s = try LossScaler(initScale: 0x1p127, growthInterval: 1)
        s.step([parameter(grad: [1])]) {}
        s.update()
        XCTAssertEqual(s.scale, 0x1p127, "2^128 would exceed Float32's range: no growth")
        var t = try LossScaler(initScale: Double(Float.leastNormalMagnitude))
        t.step([parameter(grad: [.nan])]) {}
        t.update()
        XCTAssertEqual(t.scale, Double(Float.leastNormalMagnitude), "no backoff below the smallest normal Float32")
    }

    // MARK: State dictionary

    func testStateDictRoundTripContinuesExactly() throws {
        var a = try LossScaler(initScale: 4096, growthFactor: 3, backoffFactor: 0.25, growthInterval: 4)
        let pattern: [Float] = [1, 1, .infinity, 1, 1, 1, 1, 1, .nan, 1, 1]
        for v in pattern.prefix(5) { a.step([parameter(grad: [v])]) {}; a.update() }
        var b = try LossScaler(stateDict: a.stateDict())
        XCTAssertEqual(a, b)
        for v in pattern.dropFirst(5) {
            a.step([parameter(grad: [v])]) {}; a.update()
            b.step([parameter(grad: [v])]) {}; b.update()
            XCTAssertEqual(a, b)
        }
        XCTAssertEqual(b.steps, pattern.count)
        XCTAssertEqual(b.skippedSteps, 2)
        XCTAssertEqual(Set(a.stateDict().keys), Set(LossScaler.stateKeys))
        XCTAssertEqual(a.stateDict()["scale"]?.dtype, .float64)
        XCTAssertEqual(a.stateDict()["steps"]?.dtype, .int64)
    }

    func testStateDictErrors() throws {
        let good = try LossScaler().stateDict()
        func message(_ d: [String: Tensor]) -> String? {
            do { _ = try LossScaler(stateDict: d); return nil } catch { return error.description }
        }
        var missing = good
        missing["growth_tracker"] = nil
        XCTAssertEqual(message(missing)?.hasPrefix("LossScaler.loadStateDict: missing key 'growth_tracker'"), true)
        var extra = good
        extra["foo"] = Tensor(scalar: Int64(1))
        XCTAssertEqual(message(extra)?.hasPrefix("LossScaler.loadStateDict: unexpected key 'foo'"), true)
        var wrongType = good
        wrongType["scale"] = Tensor(scalar: Float(2))
        XCTAssertEqual(message(wrongType), "LossScaler.loadStateDict: key 'scale': expected dtype float64, found float32")
        var badValue = good
        badValue["scale"] = Tensor(scalar: -1.0)
        XCTAssertEqual(message(badValue)?.hasPrefix("LossScaler.loadStateDict: initScale -1.0"), true)
        var badCount = good
        badCount["skipped_steps"] = Tensor(scalar: Int64(3))
        XCTAssertEqual(message(badCount), "LossScaler.loadStateDict: key 'skipped_steps': 3 exceeds 'steps' 0")
        var s = try LossScaler(initScale: 8)
        XCTAssertThrowsError(try s.loadStateDict(badCount))
        XCTAssertEqual(s.scale, 8, "a failed load changes nothing")
    }

    // MARK: End to end

    /// Four Gaussian blobs in 10-D; an MLP with BatchNorm learns them.
    final class MLP: Module {
        let l1: Linear, bn: BatchNorm1d, l2: Linear
        init(seed: UInt64) {
            l1 = Linear(10, 32, generator: Generator(seed: seed))
            bn = BatchNorm1d(32)
            l2 = Linear(32, 4, generator: Generator(seed: seed + 1))
        }
        override func forward(_ x: Tensor) -> Tensor { l2(bn(l1(x)).relu()) }
    }

    func blobs(_ n: Int) -> (Tensor, Tensor) {
        let g = Generator(seed: 30)
        let centres = Tensor.randn([4, 10], std: 1.5, generator: g).doubles()
        var xs: [Float] = [], ys: [Int64] = []
        for i in 0..<n {
            let c = i % 4
            let noise = Tensor.randn([10], generator: g).doubles()
            for k in 0..<10 { xs.append(Float(centres[c * 10 + k] + noise[k])) }
            ys.append(Int64(c))
        }
        return (try! Tensor(xs, shape: [n, 10]), Tensor(ys))
    }

    /// Plain SGD on master weights (the Optimizers module is exercised elsewhere).
    func sgd(_ params: [Parameter], lr: Double) {
        for p in params {
            guard let g = p.grad else { continue }
            var v = p.value
            p.value = Tensor.zeros([0])
            noGrad { v.add_(g * -lr) }
            p.value = v
        }
    }

    /// Loss curve of `steps` full-batch SGD steps under `mp` (with its loss scaler, if any).
    func train(_ mp: MixedPrecision, steps: Int) throws -> (losses: [Double], scaler: LossScaler?) {
        let model = MLP(seed: 40)
        let (x, y) = blobs(128)
        var scaler = try mp.makeLossScaler(growthInterval: 5)
        var losses: [Double] = []
        for _ in 0..<steps {
            let (logits, loss) = mp.forward(model, x) { Loss.crossEntropy(logits: $0, targets: y) }
            XCTAssertEqual(logits.dtype, .float32)
            XCTAssertEqual(loss.dtype, .float32)
            losses.append(loss.item())
            MixedPrecision.backward(loss, scaler: &scaler, parameters: model.parameters) { sgd(model.parameters, lr: 0.2) }
            for p in model.parameters { XCTAssertEqual(p.value.dtype, .float32) }
            model.zeroGrad()
        }
        return (losses, scaler)
    }

    func testHalfPrecisionTrainingReducesLossLikeFloat32() throws {
        let steps = 30
        let (ref, _) = try train(.off, steps: steps)
        XCTAssertLessThan(ref.last!, 0.5 * ref.first!, "Float32 baseline learns: \(ref.first!) -> \(ref.last!)")
        for p in HalfPrecision.allCases {
            let (curve, scaler) = try train(MixedPrecision(p), steps: steps)
            XCTAssertEqual(curve.first!, ref.first!, accuracy: p == .float16 ? 5e-3 : 3e-2, "\(p): initial loss")
            XCTAssertEqual(curve.last!, ref.last!, accuracy: 0.05 * ref.first!, "\(p): final loss \(curve.last!) vs Float32 \(ref.last!)")
            if p == .float16 {
                let s = try XCTUnwrap(scaler)
                XCTAssertEqual(s.steps, steps)
                XCTAssertLessThanOrEqual(s.skippedSteps, 3, "few overflow skips expected")
                XCTAssertGreaterThan(s.scale, 1)
            } else {
                XCTAssertNil(scaler)
            }
        }
    }

    /// Gradients of the scaled fp16 loss, after unscaling, match Float32 gradients.
    func testUnscaledGradientsMatchFloat32() throws {
        let ref = MLP(seed: 50), net = MLP(seed: 50)
        let (x, y) = blobs(64)
        Loss.crossEntropy(logits: ref(x), targets: y).backward()
        let mp = MixedPrecision(.float16)
        var scaler = try mp.makeLossScaler()
        let (_, loss) = mp.forward(net, x) { Loss.crossEntropy(logits: $0, targets: y) }
        var stepped = false
        MixedPrecision.backward(loss, scaler: &scaler, parameters: net.parameters) { stepped = true }
        XCTAssertTrue(stepped)
        for ((name, a), (_, b)) in zip(net.namedParameters(), ref.namedParameters()) {
            let ga = a.grad!.doubles(), gb = b.grad!.doubles()
            if name == "l1.bias" {
                // BN subtracts the batch mean right after l1: the true gradient of its bias is 0.
                XCTAssertLessThan(ga.map { Swift.abs($0) }.max()!, 1e-4, name)
                continue
            }
            let err = zip(ga, gb).map { Swift.abs($0 - $1) }.max()!
            let size = gb.map { Swift.abs($0) }.max()!
            XCTAssertLessThanOrEqual(err, 5e-3 * size, "\(name): gradient error \(err) vs size \(size)")
        }
    }

    // MARK: Memory (convnet-bn)

    /// Bytes held after the forward pass of convnet-bn (saved activations + output).
    func convnetGraphBytes(_ mp: MixedPrecision, batch: Int) -> Int {
        Generator.manualSeed(1)
        let model = ConvNetBN()
        let x = Tensor.randn([batch, 1, 28, 28], generator: Generator(seed: 2))
        let before = Memory.stats().current
        let logits = mp.autocast { Memory.withTag(.activations) { model(x) } }
        let held = Memory.stats().current - before
        withExtendedLifetime(logits) {}
        return held
    }

    func testConvNetBNActivationMemory() {
        let batch = Int(ProcessInfo.processInfo.environment["LOOM_AMP_BATCH"] ?? "") ?? 16
        let fp32 = convnetGraphBytes(.off, batch: batch)
        let fp16 = convnetGraphBytes(MixedPrecision(.float16), batch: batch)
        let bf16 = convnetGraphBytes(MixedPrecision(.bfloat16), batch: batch)
        let l1Half = {
            Generator.manualSeed(1)
            let model = ConvNetBN(norm: .l1)
            let x = Tensor.randn([batch, 1, 28, 28], generator: Generator(seed: 2))
            let before = Memory.stats().current
            let y = withAutocast(.float16, halfBatchNorm: true) { model(x) }
            let held = Memory.stats().current - before
            withExtendedLifetime(y) {}
            return held
        }()
        print("convnet-bn batch \(batch) graph bytes after forward: fp32 \(fp32), fp16 \(fp16) (\(String(format: "%.3f", Double(fp16) / Double(fp32)))), "
              + "bf16 \(bf16), fp16 L1 halfBatchNorm \(l1Half)")
        XCTAssertEqual(fp16, bf16, "both half types take 2 bytes")
        // Oracle: every saved Float32 activation halves, except the max-pool indices (Int64,
        // one per pooled output, whatever the dtype); autocast adds the half copies of the
        // conv weights (saved for the input gradient) and of the image. Linear layers keep
        // no weight copy (their mixed op multiplies by the Float32 master, `Tensor.linear`).
        let model = ConvNetBN()
        let indexBytes = batch * (32 * 14 * 14 + 64 * 7 * 7) * 8
        let weightCopies = model.namedParameters().filter { $0.1.value.rank == 4 }.reduce(0) { $0 + $1.1.value.count } * 2
        let expected = (fp32 - indexBytes) / 2 + indexBytes + weightCopies + batch * 28 * 28 * 2
        XCTAssertEqual(Double(fp16), Double(expected), accuracy: 0.02 * Double(expected),
                       "fp16 graph bytes \(fp16) vs expected \(expected) (fp32 \(fp32), indices \(indexBytes), weight copies \(weightCopies))")
        XCTAssertLessThan(Double(fp16) / Double(fp32), batch >= 64 ? 0.6 : 0.7)
    }
}
