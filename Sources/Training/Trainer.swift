import Datasets
import Foundation
import Layers
import Models
import Optimizers
import TensorCore
import TensorKernels

/// One epoch's results.
public struct EpochResult: Sendable {
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var testLoss: Double
    public var testAccuracy: Double
    public var imagesPerSecond: Double
    public var seconds: Double
    public var learningRate: Double
}

/// The train / evaluate loop: Fashion-MNIST, a zoo model, an optimizer and schedule,
/// per-epoch evaluation, JSONL metrics and checkpoints in a run directory, resume.
///
/// Determinism: the model is initialised from the default generator seeded with
/// `config.seed`; batch order and augmentation come from (seed, epoch, batch); dropout
/// draws from the default generator, whose state is checkpointed. With the same seed and
/// thread count, runs give the same loss curve, and a resumed run continues bit for bit.
public final class Trainer {
    public let config: TrainConfig
    public let model: Module
    public let parameters: [Parameter]
    public private(set) var optimizer: Optimizer
    public let train: DataLoader<Subset<FashionMNIST>>
    public let test: DataLoader<Subset<FashionMNIST>>
    public private(set) var nextEpoch = 0
    /// Checkpoint plans installed by `--checkpoint` (empty: none).
    public internal(set) var checkpointPlans: [Checkpointing.PlannedSequential] = []
    /// Mixed precision (`--precision`): autocast policy of the forward pass.
    public let precision: MixedPrecision
    /// Dynamic loss scaling for Float16 (nil otherwise); saved in checkpoints.
    public internal(set) var lossScaler: LossScaler?
    /// Data-parallel rank settings (nil: a single process).
    public var distributed: DistributedStep?
    /// Whether this process writes checkpoints and metrics (rank 0 under data parallelism).
    public var isPrimary: Bool { (distributed?.rank ?? 0) == 0 }
    /// Called with the memory report of the run's first training step, when set.
    public var onMemoryReport: ((MemoryReport) -> Void)?
    public var output: String?
    public var quiet = false
    public var log: (String) -> Void = { print($0); fflush(nil) }

    /// Sets up a run: seeds, threads, data, model and optimizer.
    public init(config: TrainConfig, output: String? = nil) throws {
        try config.validate()
        self.config = config
        self.output = output
        self.precision = try config.mixedPrecision()
        do {
            self.lossScaler = try precision.makeLossScaler()
        } catch {
            throw ConfigError(error.description)
        }
        let cores = ProcessInfoCores.count
        let threads = config.threads == 0 ? cores : config.threads
        KernelThreading.maxThreads = threads
        Conv2dPlan.budgetBytes = config.workspaceLimit ?? Conv2dPlan.defaultBudgetBytes
        BlasInfo.setThreads(threads)
        Generator.manualSeed(config.seed)
        let entry = try Zoo.entry(config.model)
        guard entry.inputShape == [1, 28, 28] else {
            throw ConfigError("--model \(config.model) takes \(entry.inputShape) inputs; Fashion-MNIST is [1, 28, 28]: use lenet5, alexnet-small, convnet-bn or resnet20")
        }
        model = try Zoo.make(config.model, options: Zoo.Options(norm: config.batchNormKind(), dropout: config.dropout,
                                                               ghostBatchSize: config.ghostBatchSize))
        parameters = model.parameters
        let trainSet = try FashionMNIST(directory: config.dataDir, split: .train)
        let testSet = try FashionMNIST(directory: config.dataDir, split: .test)
        var aug: [Augmentation] = []
        if config.cropPadding > 0 { aug.append(.randomCrop(padding: config.cropPadding)) }
        if config.flip { aug.append(.horizontalFlip(p: 0.5)) }
        aug.append(.fashionMNISTNormalize)
        if config.erasing { aug.append(.randomErasing(p: 0.5, scale: 0.02...0.33, ratio: 0.3...3.3, value: 0)) }
        let trainSubset = Subset(trainSet, first: config.trainLimit > 0 ? config.trainLimit : trainSet.count)
        let testSubset = Subset(testSet, first: config.testLimit > 0 ? config.testLimit : testSet.count)
        train = try DataLoader(trainSubset, options: LoaderOptions(batchSize: config.batchSize, shuffle: true, dropLast: false,
                                                                  seed: config.seed, augmentations: aug, prefetch: config.prefetch))
        test = try DataLoader(testSubset, options: LoaderOptions(batchSize: 500, shuffle: false, seed: config.seed,
                                                                augmentations: [.fashionMNISTNormalize], prefetch: config.prefetch))
        optimizer = Optimizer(try Trainer.makeTransformation(config, stepsPerEpoch: train.batchCount),
                              params: parameters.map { $0.value })
        try setUpLowMemory()
    }

    /// The optimizer chain the config names, with its per-step schedule.
    static func makeTransformation(_ c: TrainConfig, stepsPerEpoch: Int) throws -> any GradientTransformation {
        let total = c.epochs * stepsPerEpoch
        let warm = Int((c.warmupEpochs * Double(stepsPerEpoch)).rounded())
        var lr: LRSchedule
        switch c.schedule {
        case "step": lr = try .stepDecay(initial: c.lr, stepSize: c.stepEpochs * stepsPerEpoch, gamma: c.stepGamma)
        case "cosine": lr = try .cosine(initial: c.lr, totalSteps: max(total - warm, 1))
        case "onecycle": lr = try .oneCycle(maxLR: c.lr, totalSteps: max(total, 2))
        default: lr = .constant(c.lr)
        }
        if warm > 0 && c.schedule != "onecycle" { lr = try .linearWarmup(steps: warm, then: lr) }
        let opt: any GradientTransformation
        switch c.optimizer {
        case "adam": opt = try adam(lr: lr, weightDecay: c.weightDecay)
        case "adamw": opt = try adamW(lr: lr, weightDecay: c.weightDecay)
        default: opt = try sgd(lr: lr, momentum: c.momentum, nesterov: c.nesterov, weightDecay: c.weightDecay)
        }
        if let clip = c.clipNorm { return try chain([try clipByGlobalNorm(clip), opt]) }
        return opt
    }

    /// Restores model, optimizer, RNG and position from a checkpoint of the same config.
    public func restore(_ ck: Checkpoint) throws {
        var a = ck.config, b = config
        a.epochs = 0; b.epochs = 0  // more epochs may be asked for on resume
        a.threads = 0; b.threads = 0
        a.prefetch = 0; b.prefetch = 0
        guard a == b else {
            throw ConfigError("checkpoint was made with a different configuration; resume with the same flags (only --epochs, --threads may change)")
        }
        if let load = distributed?.loadModelStateDict { try load(ck.model) } else { try model.loadStateDict(ck.model) }
        if let load = distributed?.loadOptimizerStateDict { try load(ck.optimizer) } else { try optimizer.loadStateDict(ck.optimizer) }
        Generator.default.currentState = ck.rng
        if lossScaler != nil, !ck.scaler.isEmpty {
            do { lossScaler = try LossScaler(stateDict: ck.scaler) } catch { throw ConfigError("checkpoint loss scaler: \(error.description)") }
        }
        nextEpoch = ck.nextEpoch
    }

    /// Frees the optimizer's state: for a sharded optimizer that keeps its own (per-rank
    /// shard) state and replaces the update through `distributed.optimizerStep`. The
    /// trainer's checkpoints then hold no optimizer state.
    public func dropOptimizerState() {
        optimizer = Optimizer(optimizer.transformation, params: [])
    }

    /// Parameter values are moved out of their `Parameter`s for the update so their
    /// storage is uniquely referenced and the optimizer writes in place.
    func optimizerStep() {
        var values = parameters.map { _ in Tensor.zeros([0]) }
        for i in parameters.indices { swap(&values[i], &parameters[i].value) }
        optimizer.step(&values)
        for i in parameters.indices { swap(&values[i], &parameters[i].value) }
    }

    /// Runs one training epoch and returns (mean loss, accuracy, images/s). Under data
    /// parallelism the loss and accuracy are over all ranks' rows, and images/s counts
    /// the global batch.
    public func trainEpoch(_ epoch: Int) throws -> (loss: Double, accuracy: Double, imagesPerSecond: Double, seconds: Double) {
        model.train()
        let bar = quiet ? nil : ProgressBar(title: "epoch \(epoch + 1)/\(config.epochs)", total: train.batchCount)
        let start = Date()
        var lossSum = 0.0, correct = 0, seen = 0, globalSeen = 0
        for batch in train.epoch(epoch) {
            let r: (loss: Double, correct: Int, count: Int)
            if let report = onMemoryReport {
                onMemoryReport = nil
                let m = try memoryReportStep(inputs: batch.inputs, labels: batch.labels)
                r = m.result
                report(m.report)
            } else {
                r = try trainStep(inputs: batch.inputs, labels: batch.labels)
            }
            lossSum += r.loss * Double(r.count)
            correct += r.correct
            seen += r.count
            globalSeen += batch.labels.count
            let elapsed = Date().timeIntervalSince(start)
            bar?.update(done: batch.index + 1, loss: lossSum / Double(Swift.max(seen, 1)), accuracy: Double(correct) / Double(Swift.max(seen, 1)),
                        imagesPerSecond: Double(globalSeen) / max(elapsed, 1e-9))
        }
        bar?.finish()
        if let d = distributed {
            let sums = try d.sumOverRanks([lossSum, Double(correct), Double(seen)])
            lossSum = sums[0]; correct = Int(sums[1]); seen = Int(sums[2])
        }
        let secs = Date().timeIntervalSince(start)
        return (lossSum / Double(max(seen, 1)), Double(correct) / Double(max(seen, 1)), Double(globalSeen) / max(secs, 1e-9), secs)
    }

    /// Evaluates on the test split (eval mode): mean loss and the confusion matrix.
    public func evaluate() -> (loss: Double, confusion: ConfusionMatrix) {
        model.eval()
        defer { model.train() }
        var cm = ConfusionMatrix(classes: 10)
        var lossSum = 0.0, seen = 0
        noGrad {
            for batch in test.epoch(0) {
                let logits = model(batch.inputs)
                lossSum += Loss.crossEntropy(logits: logits, targets: batch.labels, reduction: .sum).item()
                seen += batch.labels.count
                cm.add(logits: logits, labels: batch.labels)
            }
        }
        return (lossSum / Double(max(seen, 1)), cm)
    }

    /// Trains from `nextEpoch` to `config.epochs` (or only until epoch `stopAfter`, as if
    /// interrupted), evaluating, logging and checkpointing each epoch.
    @discardableResult
    public func run(stopAfter: Int? = nil) throws -> [EpochResult] {
        var results: [EpochResult] = []
        var metrics: JSONLWriter?
        if let out = output, isPrimary {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            metrics = try JSONLWriter(path: out + "/metrics.jsonl", append: nextEpoch > 0)
        }
        if !quiet {
            log("training \(config.model) (\(grouped(model.parameterCount)) parameters) on Fashion-MNIST: \(train.dataset.count) train / "
                + "\(test.dataset.count) test images, batch \(config.batchSize), \(config.optimizer) lr \(config.lr) \(config.schedule), "
                + "\(KernelThreading.maxThreads) threads, OpenBLAS \(BlasInfo.coreName)")
        }
        if let cap = config.memoryCap {
            let plan = planPeak(cap: cap)
            let largest = plan.largestBatchUnderCap.map { $0 == Int.max ? "any" : "\($0)" } ?? "?"
            if plan.peak > cap {
                throw ConfigError("--memory-cap \(formatBytes(cap)) (\(cap) bytes): the planned peak of one step at batch \(config.batchSize) "
                                  + "is \(formatBytes(plan.peak)) (\(plan.peak) bytes); the largest batch that fits is \(largest). "
                                  + "Lower --batch-size, or use --checkpoint sqrt, --micro-batches K or --precision fp16")
            }
            if !quiet {
                log("memory plan: peak \(formatBytes(plan.peak)) per step at batch \(config.batchSize), cap \(formatBytes(cap)); largest batch under the cap: \(largest)")
            }
        }
        let end = Swift.min(config.epochs, stopAfter ?? config.epochs)
        for epoch in nextEpoch..<Swift.max(end, nextEpoch) {
            let lr = distributed?.learningRate?() ?? optimizer.learningRate ?? config.lr
            let t = try trainEpoch(epoch)
            let (testLoss, cm) = evaluate()
            let r = EpochResult(epoch: epoch + 1, trainLoss: t.loss, trainAccuracy: t.accuracy, testLoss: testLoss,
                                testAccuracy: cm.accuracy, imagesPerSecond: t.imagesPerSecond, seconds: t.seconds, learningRate: lr)
            results.append(r)
            nextEpoch = epoch + 1
            if !quiet {
                log(String(format: "epoch %d/%d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.0f img/s, %.1f s",
                           r.epoch, config.epochs, r.trainLoss, 100 * r.trainAccuracy, r.testLoss, 100 * r.testAccuracy,
                           r.imagesPerSecond, r.seconds))
            }
            // A sharded optimizer gathers its state on every rank (a collective) before rank 0 writes.
            let shardedState = output == nil ? nil : try distributed?.optimizerStateDict?()
            let fullModel = output == nil ? nil : try distributed?.modelStateDict?()
            guard isPrimary else { continue }
            metrics?.write(["epoch": r.epoch, "train_loss": r.trainLoss, "train_accuracy": r.trainAccuracy, "test_loss": r.testLoss,
                            "test_accuracy": r.testAccuracy, "images_per_second": r.imagesPerSecond, "seconds": r.seconds,
                            "lr": r.learningRate, "step": distributed?.stepCount?() ?? optimizer.stepCount])
            if let out = output {
                try checkpoint(optimizerState: shardedState, modelState: fullModel).save(to: out + "/checkpoint.safetensors")
            }
        }
        return results
    }

    /// The current state as a checkpoint; `optimizerState` replaces the trainer's own
    /// optimizer's (a sharded optimizer's gathered state, `DistributedStep.optimizerStateDict`),
    /// `modelState` the model's (sharded parameters gathered, `DistributedStep.modelStateDict`).
    public func checkpoint(optimizerState: [String: Tensor]? = nil, modelState: [(String, Tensor)]? = nil) -> Checkpoint {
        Checkpoint(config: config, model: Dictionary(uniqueKeysWithValues: modelState ?? model.stateDict()), optimizer: optimizerState ?? optimizer.stateDict(),
                   rng: Generator.default.currentState, nextEpoch: nextEpoch, scaler: lossScaler?.stateDict() ?? [:])
    }
}
