import XCTest
import Foundation
import Collectives
import Layers
import Optimizers
import TensorCore
@testable import DataParallel

/// ZeRO stage 3 / FSDP against DDP + the same (unsharded) optimizer.
///
/// Oracle: DDP (native allreduce, average) then `Optimizer.step` on every full parameter.
/// FSDP gathers bitwise copies of the shard values, runs the same ops, reduce-scatters
/// with the same rank-order sum and division by N, and applies the same elementwise rule
/// to each element of the rank's flat shard: the same arithmetic on the same numbers, so
/// the weights must be bitwise equal. Unit shards are uneven for 2 and 3 ranks (e.g. a
/// 3-element bias over 2 ranks), and a rank may own nothing of a small unit.
final class FullyShardedTests: XCTestCase {
    let steps = 3, batch = 6

    typealias MakeTransformation = @Sendable () throws -> any GradientTransformation

    /// Every rank's weights after `steps` DDP steps (rank 0's returned; all are equal).
    func ddpOracle(_ build: @escaping ModelBuilder, size: Int, data: Batches, steps: Int,
                   transformation: @escaping MakeTransformation) throws -> (weights: [[Double]], optimizer: [String: Tensor]) {
        try InProcessWorld.run(size: size) { group in
            let model = build(group.rank == 0 ? 42 : 99)
            let ddp = try DistributedDataParallel(model, group: group)
            var opt = Optimizer(try transformation(), params: model.parameters.map(\.value))
            for t in 0..<steps {
                let (x, y) = data.local(t, rank: group.rank, size: size)
                Loss.crossEntropy(logits: ddp(x), targets: y).backward()
                try ddp.finishGradientSync()
                optimizerStep(&opt, model)
                model.zeroGrad()
            }
            return (weights(model), opt.stateDict())
        }[0]
    }

    /// Every rank's full weights after `steps` FSDP steps.
    func fsdpRun(_ build: @escaping ModelBuilder, size: Int, data: Batches, policy: FSDPUnitPolicy,
                 transformation: @escaping MakeTransformation) throws -> [[[Double]]] {
        let steps = self.steps
        return try InProcessWorld.run(size: size) { group in
            let model = build(group.rank == 0 ? 42 : 99)
            let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try transformation(), units: policy)
            for t in 0..<steps {
                let (x, y) = data.local(t, rank: group.rank, size: size)
                Loss.crossEntropy(logits: try fsdp(x), targets: y).backward()
                try fsdp.step()
            }
            precondition(fsdp.stepCount == steps, "stepCount \(fsdp.stepCount)")
            precondition(model.parameters.allSatisfy { $0.value.storageBlock.isReleased }, "parameters must be released between steps")
            return try fsdp.withFullParameters { weights(model) }
        }
    }

    func check(_ build: @escaping ModelBuilder, sample: [Int], transformation: @escaping MakeTransformation, name: String) throws {
        let data = Batches(steps: steps, batch: batch, sample: sample, dtype: .float32, seed: 3)
        let initial = weights(build(42))
        for size in [1, 2, 3] {
            let oracle = try ddpOracle(build, size: size, data: data, steps: steps, transformation: transformation).weights
            XCTAssertGreaterThan(maxAbsDiff(oracle, initial), 1e-3, "\(name): the run must move the weights")
            for policy in [FSDPUnitPolicy.perLayer, .wholeModel] {
                let ranks = try fsdpRun(build, size: size, data: data, policy: policy, transformation: transformation)
                for r in 0..<size {
                    XCTAssertEqual(ranks[r], oracle, "\(name), world \(size), \(policy), rank \(r): max diff \(maxAbsDiff(ranks[r], oracle))")
                }
            }
        }
    }

    func testSGDMomentumWeightDecayMLPEqualsDDP() throws {
        try check(mlpBuilder, sample: [5], transformation: { try sgd(lr: 0.1, momentum: 0.9, weightDecay: 1e-3) }, name: "sgd+momentum+wd mlp")
    }

    func testAdamCNNEqualsDDP() throws {
        try check(cnnBuilder, sample: [2, 4, 4], transformation: { try adam(lr: 0.01) }, name: "adam cnn")
    }

    func testSGDMomentumCNNAndAdamMLPEqualDDP() throws {
        try check(cnnBuilder, sample: [2, 4, 4], transformation: { try sgd(lr: 0.05, momentum: 0.9, weightDecay: 1e-2) }, name: "sgd cnn")
        try check(mlpBuilder, sample: [5], transformation: { try adam(lr: 0.01) }, name: "adam mlp")
    }

    /// BatchNorm (per-rank batch statistics, replicated running buffers; its VJP reads the
    /// gathered gamma) in a unit of its own, with SGD + momentum.
    func testBatchNormCNNEqualsDDP() throws {
        try check(bnBuilder, sample: [2, 4, 4], transformation: { try sgd(lr: 0.05, momentum: 0.9) }, name: "sgd bn-cnn")
    }

    /// A model that is not a Sequential (a container holding Sequentials and a residual
    /// block, as the zoo's models are): per-layer units are found inside the containers
    /// and the block, gathered through forward hooks, and the result equals DDP bitwise.
    func testContainerModelWithResidualBlockEqualsDDP() throws {
        XCTAssertEqual(try FSDPUnitPlan(residualBuilder(1)).units.map(\.name),
                       ["stem.0", "stem.1", "block.conv1", "block.bn1", "block.conv2", "block.bn2", "head.1"])
        try check(residualBuilder, sample: [2, 4, 4], transformation: { try sgd(lr: 0.05, momentum: 0.9) }, name: "sgd residual container")
    }

    /// A rank without rows of a batch takes part through `participateWithoutData()`: the
    /// others' collectives line up and the result is their gradient averaged over all
    /// ranks (the empty rank contributes zeros), as DDP's zero-loss backward gives.
    func testRankWithoutDataParticipates() throws {
        let data = Batches(steps: 1, batch: 4, sample: [5], dtype: .float32, seed: 6)
        let (x, y) = (data.inputs[0], data.labels[0])
        let got = try InProcessWorld.run(size: 2) { group -> [[Double]] in
            let model = mlpBuilder(group.rank == 0 ? 42 : 99)
            let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try sgd(lr: 0.1))
            if group.rank == 0 {
                Loss.crossEntropy(logits: try fsdp(x), targets: y).backward()
            } else {
                fsdp.participateWithoutData()
            }
            try fsdp.step()
            return try weights(fsdp)
        }
        let oracle = try InProcessWorld.run(size: 2) { group -> [[Double]] in
            let model = mlpBuilder(group.rank == 0 ? 42 : 99)
            let ddp = try DistributedDataParallel(model, group: group)
            var opt = Optimizer(try sgd(lr: 0.1), params: model.parameters.map(\.value))
            if group.rank == 0 {
                Loss.crossEntropy(logits: ddp(x), targets: y).backward()
            } else {
                model.parameters.dropFirst().reduce(model.parameters[0].value.sum() * 0) { $0 + $1.value.sum() * 0 }.backward()
            }
            try ddp.finishGradientSync()
            optimizerStep(&opt, model)
            return weights(model)
        }
        XCTAssertEqual(got[0], oracle[0])
        XCTAssertEqual(got[1], oracle[0])
        XCTAssertGreaterThan(maxAbsDiff(got[0], weights(mlpBuilder(42))), 1e-4, "the step must move the weights")
    }

    /// Evaluation through the wrapper (no grad, eval mode) gathers and frees each unit and
    /// gives the unwrapped model's output bitwise.
    func testEvalForwardEqualsFullModel() throws {
        let data = Batches(steps: 2, batch: 6, sample: [2, 4, 4], dtype: .float32, seed: 4)
        let out = try InProcessWorld.run(size: 2) { group -> Bool in
            let model = bnBuilder(group.rank == 0 ? 42 : 99)
            let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try adam(lr: 0.01))
            let (x, y) = data.local(0, rank: group.rank, size: 2)
            Loss.crossEntropy(logits: try fsdp(x), targets: y).backward()
            try fsdp.step()
            model.eval()
            let viaWrapper = try noGrad { try fsdp(data.inputs[1]) }
            let direct = try fsdp.withFullParameters { noGrad { model(data.inputs[1]) } }
            return viaWrapper.doubles() == direct.doubles() && model.parameters.allSatisfy { $0.value.storageBlock.isReleased }
        }
        XCTAssertEqual(out, [true, true])
    }

    /// Two backwards before one step (micro-batches). FSDP adds each backward's averaged
    /// shard (Σ_b avg_r g); DDP's `noSync` averages the accumulated sum (avg_r Σ_b g): the
    /// same up to rounding, so this compares within 1e-6 (ranks agree bitwise).
    func testGradientAccumulationMatchesDDPNoSync() throws {
        let data = Batches(steps: 4, batch: 6, sample: [5], dtype: .float32, seed: 11)
        let make: MakeTransformation = { try sgd(lr: 0.1, momentum: 0.9) }
        for size in [1, 2, 3] {
            let oracle = try InProcessWorld.run(size: size) { group -> [[Double]] in
                let model = mlpBuilder(group.rank == 0 ? 42 : 99)
                let ddp = try DistributedDataParallel(model, group: group)
                var opt = Optimizer(try make(), params: model.parameters.map(\.value))
                for step in 0..<2 {
                    let (xa, ya) = data.local(2 * step, rank: group.rank, size: size)
                    ddp.noSync { Loss.crossEntropy(logits: ddp(xa), targets: ya).backward() }
                    let (xb, yb) = data.local(2 * step + 1, rank: group.rank, size: size)
                    Loss.crossEntropy(logits: ddp(xb), targets: yb).backward()
                    try ddp.finishGradientSync()
                    optimizerStep(&opt, model)
                    model.zeroGrad()
                }
                return weights(model)
            }[0]
            let ranks = try InProcessWorld.run(size: size) { group -> [[Double]] in
                let model = mlpBuilder(group.rank == 0 ? 42 : 99)
                let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try make())
                for step in 0..<2 {
                    for micro in 0..<2 {
                        let (x, y) = data.local(2 * step + micro, rank: group.rank, size: size)
                        Loss.crossEntropy(logits: try fsdp(x), targets: y).backward()
                    }
                    try fsdp.step()
                }
                return try weights(fsdp)
            }
            for r in 0..<size {
                XCTAssertLessThan(maxAbsDiff(ranks[r], oracle), 1e-6, "world \(size), rank \(r)")
                XCTAssertEqual(ranks[r], ranks[0], "world \(size), rank \(r)")
            }
        }
    }

    // MARK: - Units

    func testUnitPlans() throws {
        let cnn = cnnBuilder(1)
        let plan = try FSDPUnitPlan(cnn)
        XCTAssertEqual(plan.description, "fsdp units 2 params 4\nunit 0 '0' params 0 1\nunit 1 '4' params 2 3")
        XCTAssertEqual(try FSDPUnitPlan(cnn, policy: .wholeModel).description, "fsdp units 1 params 4\nunit 0 '' params 0 1 2 3")
        let nested = Sequential([Sequential([Linear(3, 4), ReLU(), Linear(4, 4, bias: false)]), Linear(4, 2)])
        XCTAssertEqual(try FSDPUnitPlan(nested).units.map(\.name), ["0.0", "0.2", "1"])
        XCTAssertEqual(try FSDPUnitPlan(nested, policy: .topLevel).units.map(\.name), ["0", "1"])
        XCTAssertEqual(try FSDPUnitPlan(nested, policy: .modules(["1", "0"])).units.map(\.name), ["0", "1"])
        XCTAssertEqual(try FSDPUnitPlan(nested, policy: .modules(["0.0", "0.2", "1"])).units.map(\.parameters), [[0, 1], [2], [3, 4]])
        XCTAssertEqual(try FSDPUnitPlan(TwoBranches(seed: 1)).units.map(\.name), ["main", "extra"], "units inside a custom container")
        XCTAssertEqual(try FSDPUnitPlan(TwoBranches(seed: 1), policy: .topLevel).units.map(\.name), ["main", "extra"])
        XCTAssertEqual(try FSDPUnitPlan(TwoBranches(seed: 1), policy: .modules(["main", "extra"])).units.map(\.parameters), [[0, 1], [2, 3]])
        // A checkpointed Sequential is one unit (its segments recompute inside the unit's window).
        let checkpointed = Sequential([Sequential([Linear(3, 4), ReLU(), Linear(4, 4)]), Linear(4, 2)])
        (checkpointed.layers[0] as! Sequential).checkpointPlan = CheckpointPlanner.sqrtPlan(layers: 3)
        XCTAssertEqual(try FSDPUnitPlan(checkpointed).units.map(\.name), ["0", "1"])
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(message { _ = try FSDPUnitPlan(nested, policy: .modules(["0.0", "1"])) },
                       "FSDP unit plan: parameters '0.2.weight' belong to no unit (units: '0.0', '1')")
        XCTAssertEqual(message { _ = try FSDPUnitPlan(nested, policy: .modules(["0", "0.2", "1"])) },
                       "FSDP unit plan: unit '0.2' is inside unit '0'; units must not nest")
        XCTAssertEqual(message { _ = try FSDPUnitPlan(checkpointed, policy: .modules(["0.0", "0.2", "1"])) },
                       "FSDP unit plan: module '0.0' is inside '0', a Sequential with a checkpoint plan; its recomputation in backward would run outside the unit's gathered window (make the checkpointed Sequential, or a module around it, the unit)")
        XCTAssertEqual(message { _ = try FSDPUnitPlan(nested, policy: .modules(["2"])) }.prefix(39), "FSDP unit plan: no module named '2' (mo")
        let shared = Linear(2, 2)
        XCTAssertEqual(message { _ = try FSDPUnitPlan(units: [.init(name: "a", parameters: [0, 1]), .init(name: "b", parameters: [1])],
                                                      parameterNames: ["w", "b"]) },
                       "FSDP unit plan: parameter 'b' is in units 'a' and 'b'; a parameter must belong to exactly one unit (shared weights must sit inside one unit)")
        _ = shared
    }

    // MARK: - Errors

    func testClearErrors() throws {
        func message(size: Int = 2, _ body: @escaping @Sendable (any ProcessGroup) throws -> Void) throws -> String {
            try InProcessWorld.run(size: size) { group -> String in
                do { try body(group); return "no error" } catch { return "\(error)" }
            }[size - 1]
        }
        XCTAssertEqual(try message { g in
            _ = try FullyShardedDataParallel(mlpBuilder(1), group: g, transformation: Chain([try clipByGlobalNorm(1), try sgd(lr: 0.1)]))
        }, "rank 1: FSDP: the optimizer updates each rank's 1/2 shard of the parameters, so the rule must be elementwise (SGD, momentum, weight decay, Adam, AdamW); global-norm clipping needs the norm over all shards and is not supported")
        XCTAssertEqual(try message { g in
            let m = mlpBuilder(1)
            let last = m.parameters[3]
            last.value = last.value.detached().to(.float64).requiringGrad()
            _ = try FullyShardedDataParallel(m, group: g, transformation: try sgd(lr: 0.1))
        }, "rank 1: FSDP: parameter '2.bias' has dtype float64; expected float32 or float64, the same for all parameters (first: '0.weight' float32)")
        XCTAssertEqual(try message { g in
            let model = TwoBranches(seed: 1)
            let fsdp = try FullyShardedDataParallel(model, group: g, transformation: try sgd(lr: 0.1))
            Loss.mseLoss(try fsdp(Tensor.ones([1, 3])), Tensor.zeros([1, 2])).backward()
            try fsdp.step()
        }, "rank 1, step 0: FSDP: 2 of 4 parameters received no gradient in this backward: 'extra.weight', 'extra.bias'; expected every parameter to take part in the loss")
        // Per-layer units: an unused layer is a whole unit without gradients.
        XCTAssertEqual(try message(size: 3) { g in
            let model = Sequential([Linear(3, 2), Linear(3, 2)])
            let fsdp = try FullyShardedDataParallel(model, group: g, transformation: try sgd(lr: 0.1), units: .modules(["0", "1"]))
            // Forward only through unit 0 (as a model that skips a branch would).
            try fsdp.gather(0, phase: "test")
            let y = model.layers[0](Tensor.ones([1, 3]))
            fsdp.release(0)
            y.registerHook { _ in fsdp.beforeBackward(0); return nil }
            Loss.mseLoss(y, Tensor.zeros([1, 2])).backward()
            try fsdp.step()
        }, "rank 2, step 0: FSDP: 2 of 4 parameters received no gradient in this backward: '1.weight', '1.bias'; expected every parameter to take part in the loss")
    }

    /// Reading a released parameter outside a forward/backward traps naming it
    /// (in a child process: a trap ends the process).
    func testReadingAReleasedParameterTrapsNamingIt() throws {
        if ProcessInfo.processInfo.environment["LOOM_FSDP_TRAP_CHILD"] == "1" {
            let out = try InProcessWorld.run(size: 1) { group -> String in
                let model = mlpBuilder(1)
                _ = try FullyShardedDataParallel(model, group: group, transformation: try sgd(lr: 0.1))
                return "unreachable \(model.parameters[0].value.sum())"  // outside a forward: must trap
            }
            print(out)
            return
        }
        let (status, output) = try runTestInChild("DataParallelTests.FullyShardedTests/testReadingAReleasedParameterTrapsNamingIt",
                                                  environment: ["LOOM_FSDP_TRAP_CHILD": "1"])
        XCTAssertNotEqual(status, 0, output)
        XCTAssertTrue(output.contains("an op read its bytes while they are released (parameter '0.weight' of FSDP unit '0' on rank 0: fully sharded, its full values exist only during its unit's forward and backward inside FullyShardedDataParallel; to read them use withFullParameters { } or fullParameterStateDict() (collective))"), output)
        XCTAssertFalse(output.contains("unreachable"), output)
    }

    // MARK: - Checkpoints

    /// `fullStateDict` and `fullParameterStateDict` equal the DDP run's optimizer state and
    /// weights bitwise; loading them (at another world size too) and training on gives the
    /// oracle's later steps.
    func testCheckpointsEqualUnshardedAndResume() throws {
        let data = Batches(steps: 3, batch: 6, sample: [2, 4, 4], dtype: .float32, seed: 8)
        let make: MakeTransformation = { try adam(lr: 0.01) }
        let build = cnnBuilder
        for size in [2, 3] {
            let two = try ddpOracle(build, size: size, data: data, steps: 2, transformation: make)
            let three = try ddpOracle(build, size: size, data: data, steps: 3, transformation: make)
            let saved = try InProcessWorld.run(size: size) { group -> ([String: Tensor], [(String, Tensor)], [[Double]]) in
                let model = build(group.rank == 0 ? 42 : 99)
                let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try make())
                for t in 0..<2 {
                    let (x, y) = data.local(t, rank: group.rank, size: size)
                    Loss.crossEntropy(logits: try fsdp(x), targets: y).backward()
                    try fsdp.step()
                }
                let viaBody = try fsdp.withFullParameters { model.stateDict().map { ($0.0, $0.1.doubles()) } }
                let params = try fsdp.fullParameterStateDict()
                precondition(viaBody.map(\.0) == params.map(\.0) && zip(viaBody, params).allSatisfy { $0.1 == $1.1.doubles() })
                return (try fsdp.fullStateDict(), params, try weights(fsdp))
            }
            for r in 0..<size {
                XCTAssertEqual(saved[r].2, two.weights, "world \(size) rank \(r)")
                XCTAssertEqual(Set(saved[r].0.keys), Set(two.optimizer.keys))
                for (k, v) in two.optimizer {
                    XCTAssertEqual(saved[r].0[k]?.shape, v.shape, k)
                    XCTAssertEqual(saved[r].0[k]?.doubles(), v.doubles(), "world \(size) rank \(r) key \(k)")
                }
            }
            // Resume from the checkpoint: the same world size gives the oracle's third step;
            // another world size (loading only) reproduces the saved state.
            let optDict = saved[0].0, paramDict = Dictionary(uniqueKeysWithValues: saved[0].1)
            for resumeSize in [size, 5 - size] {
                let resumed = try InProcessWorld.run(size: resumeSize) { group -> ([[Double]], [String: [Double]]) in
                    let model = build(7)  // fresh, different weights: the checkpoint must overwrite them
                    let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try make())
                    try fsdp.loadFullParameterStateDict(paramDict)
                    try fsdp.loadFullStateDict(optDict)
                    let reloaded = try fsdp.fullStateDict().mapValues { $0.doubles() }
                    if resumeSize == size {
                        let (x, y) = data.local(2, rank: group.rank, size: size)
                        Loss.crossEntropy(logits: try fsdp(x), targets: y).backward()
                        try fsdp.step()
                    }
                    return (try weights(fsdp), reloaded)
                }
                for r in 0..<resumeSize {
                    XCTAssertEqual(resumed[r].1, optDict.mapValues { $0.doubles() }, "reload at \(resumeSize) rank \(r)")
                    XCTAssertEqual(resumed[r].0, resumeSize == size ? three.weights : two.weights, "resume \(size) -> \(resumeSize), rank \(r)")
                }
            }
        }
    }

    func testCheckpointErrorsNameTheKey() throws {
        let m = try InProcessWorld.run(size: 2) { group -> [String] in
            let fsdp = try FullyShardedDataParallel(mlpBuilder(1), group: group, transformation: try adam(lr: 0.1))
            var out: [String] = []
            var params = Dictionary(uniqueKeysWithValues: try fsdp.fullParameterStateDict())
            params["2.bias"] = Tensor.zeros([4])
            do { try fsdp.loadFullParameterStateDict(params) } catch { out.append("\(error)") }
            var opt = try fsdp.fullStateDict()
            opt["1.exp_avg"] = Tensor.zeros([3])
            do { try fsdp.loadFullStateDict(opt) } catch { out.append("\(error)") }
            return out
        }
        XCTAssertEqual(m[0], ["rank 0: FSDP: state dict key '2.bias': expected shape [3], found [4]",
                              "rank 0: FSDP: optimizer state key '1.exp_avg' (parameter '0.bias'): expected [8] float32, found [3] float32"])
    }

    // MARK: - Memory

    /// Memory per rank by tag against ZeRO stage 3 (float32, Ψ parameters, Adam K = 2, N ranks):
    /// between steps parameters 4Ψ/N, gradients 4Ψ/N, optimizer state 8Ψ/N (within 10%, a
    /// rank's shard is rounded up to whole elements per unit); peaks during forward/backward:
    /// parameters <= 4Ψ/N + 2 units, gradients <= 4Ψ/N + 2 units (one unit's full gradients,
    /// plus slack because in-process ranks share the allocator and are not in lockstep).
    /// Rank 0 reads the allocator's total at barriers and divides by N; FSDP's own per-rank
    /// counter of gathered bytes must be exactly one unit (the largest).
    func testMemoryPerRankMatchesZeRO3Formulas() throws {
        let build: ModelBuilder = { seed in
            let g = Generator(seed: seed)
            return Sequential([Linear(64, 64, generator: g), ReLU(), Linear(64, 64, generator: g), ReLU(),
                               Linear(64, 64, generator: g), ReLU(), Linear(64, 61, generator: g)])
        }
        let psi = Double(3 * (64 * 64 + 64) + 64 * 61 + 61)
        let unitBytes = Double(4 * (64 * 64 + 64))
        for prefetch in [false, true] { for size in [1, 2, 3] {
            let data = Batches(steps: 2, batch: 6, sample: [64], dtype: .float32, seed: 5)
            let base = Memory.stats()
            let readings = try InProcessWorld.run(size: size) { group -> [Double] in
                let model = build(UInt64(group.rank))
                let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try adam(lr: 1e-3), prefetch: prefetch)
                let (x0, y0) = data.local(0, rank: group.rank, size: size)
                Loss.crossEntropy(logits: try fsdp(x0), targets: y0).backward()
                try fsdp.step()
                try group.barrier()
                if group.rank == 0 { Memory.resetPeak() }
                try group.barrier()
                let (x, y) = data.local(1, rank: group.rank, size: size)
                let loss = Loss.crossEntropy(logits: try fsdp(x), targets: y)
                loss.backward()
                try group.barrier()
                var out: [Double] = []
                if group.rank == 0 {
                    let s = Memory.stats()
                    let tags: [MemoryTag] = [.parameters, .gradients, .optimizerState]
                    out = tags.map { Double(s.current($0) - base.current($0)) / Double(size) }
                        + tags.map { Double(s.peak($0) - base.current($0)) / Double(size) }
                }
                try group.barrier()
                try fsdp.step()
                try group.barrier()
                if group.rank == 0 {
                    let s = Memory.stats()
                    out += [Double(s.current(.optimizerState) - base.current(.optimizerState)) / Double(size),
                            Double(s.peak(.optimizerState) - base.current(.optimizerState)) / Double(size)]
                }
                try group.barrier()
                out.append(Double(fsdp.peakGatheredBytes))
                withExtendedLifetime(fsdp) {}
                return out
            }
            let n = Double(size)
            let r = readings[0]
            let shard = 4 * psi / n
            let report: [(String, Double, String)] = [
                ("parameters after backward", r[0], "4Ψ/N = \(Int(shard))"),
                ("gradients after backward", r[1], "4Ψ/N = \(Int(shard))"),
                ("optimizer state after backward", r[2], "8Ψ/N = \(Int(2 * shard))"),
                ("parameters peak (fwd+bwd)", r[3], "4Ψ/N + unit = \(Int(shard + unitBytes))"),
                ("gradients peak (fwd+bwd)", r[4], "4Ψ/N + unit = \(Int(shard + unitBytes))"),
                ("optimizer state after step", r[6], "8Ψ/N = \(Int(2 * shard))"),
                ("optimizer state peak (step)", r[7], "8Ψ/N + temporaries"),
                ("gathered parameters peak (rank 0)", readings[0][8], "largest unit = \(Int(unitBytes))"),
            ]
            for (what, got, formula) in report {
                print("FSDP memory per rank, prefetch \(prefetch), world \(size), \(what): \(Int(got)) B; formula \(formula) B")
            }
            XCTAssertEqual(r[0], shard, accuracy: 0.1 * shard, "world \(size): parameters")
            XCTAssertEqual(r[1], shard, accuracy: 0.1 * shard, "world \(size): gradients")
            XCTAssertEqual(r[2], 2 * shard, accuracy: 0.1 * 2 * shard, "world \(size): optimizer state")
            XCTAssertEqual(r[6], 2 * shard, accuracy: 0.1 * 2 * shard, "world \(size): optimizer state after step")
            XCTAssertGreaterThanOrEqual(r[3], shard + unitBytes * 0.99, "world \(size): a unit is gathered at some point")
            // Prefetching holds at most one unit more (the next unit's gather in flight).
            let extra = prefetch ? unitBytes : 0
            XCTAssertLessThanOrEqual(r[3], shard + 2 * unitBytes + extra, "world \(size), prefetch \(prefetch): parameters peak")
            XCTAssertLessThanOrEqual(r[4], shard + 2 * unitBytes, "world \(size), prefetch \(prefetch): gradients peak")
            for rank in 0..<size {
                let peak = readings[rank][readings[rank].count - 1]
                if prefetch {
                    XCTAssertGreaterThan(peak, unitBytes, "world \(size), rank \(rank): the next unit is gathered while one computes")
                    XCTAssertLessThanOrEqual(peak, 2 * unitBytes, "world \(size), rank \(rank): at most one unit prefetched")
                } else {
                    XCTAssertEqual(peak, unitBytes, "world \(size), rank \(rank): one unit gathered at a time")
                }
            }
        } }
    }
}

/// A container model (not a Sequential): stem (conv, BN, relu), a residual block, head.
final class ResidualNet: Module {
    let stem: Sequential
    let block: BasicBlock
    let head: Sequential
    init(seed: UInt64) {
        let g = Generator(seed: seed)
        stem = Sequential([Conv2d(2, 4, kernelSize: (3, 3), padding: (1, 1), bias: false, generator: g), BatchNorm2d(4), ReLU()])
        block = BasicBlock(4, 4, generator: g)
        head = Sequential([Flatten(), Linear(64, 3, generator: g)])
    }
    override func forward(_ x: Tensor) -> Tensor { head(block(stem(x))) }
}

let residualBuilder: ModelBuilder = { seed in ResidualNet(seed: seed) }

/// A small CNN with BatchNorm: conv 3x3 (4 ch) -> BN -> relu -> flatten -> linear 64 -> 3.
let bnBuilder: ModelBuilder = { seed in
    let g = Generator(seed: seed)
    return Sequential([Conv2d(2, 4, kernelSize: (3, 3), padding: (1, 1), generator: g), BatchNorm2d(4), ReLU(),
                       Flatten(), Linear(64, 3, generator: g)])
}

/// A fully sharded model's full weights (collective), as `weights(_:)` for a plain model.
func weights(_ fsdp: FullyShardedDataParallel) throws -> [[Double]] {
    try fsdp.withFullParameters { weights(fsdp.module) }
}

/// Runs this test binary again on one test with extra environment; returns the exit
/// status and the combined output.
func runTestInChild(_ test: String, environment: [String: String]) throws -> (Int32, String) {
    guard let binary = CommandLine.arguments.first(where: { $0.hasSuffix(".xctest") }) ?? CommandLine.arguments.first else {
        throw XCTSkip("cannot find the test binary")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = [test]
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    env["SWIFT_BACKTRACE"] = "enable=no"
    process.environment = env
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
