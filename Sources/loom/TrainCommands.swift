import ArgumentParser
import Collectives
import DataParallel
import Datasets
import Foundation
import Layers
import Models
import TensorCore
import TensorKernels
import Training

/// `loom train`: trains a zoo model on Fashion-MNIST.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a CNN on Fashion-MNIST (default: lenet5, 10 epochs, SGD + momentum, cosine schedule).",
        discussion: """
        Writes metrics.jsonl and checkpoint.safetensors (model + optimizer + RNG state) to --output after every epoch.
        --resume continues a run from its checkpoint, bit for bit.
        Example: loom train --model convnet-bn --epochs 15 --batch-size 128 --lr 0.1 --output runs/bn
        """)

    @Option(help: "Model: lenet5, alexnet-small, convnet-bn, resnet20.") var model: String = "lenet5"
    @Option(help: "Epochs.") var epochs: Int = 10
    @Option(help: "Batch size.") var batchSize: Int = 64
    @Option(help: "sgd, adam or adamw.") var optimizer: String = "sgd"
    @Option(help: "Peak learning rate.") var lr: Double = 0.05
    @Option(help: "SGD momentum.") var momentum: Double = 0.9
    @Flag(help: "Nesterov momentum.") var nesterov = false
    @Option(help: "Weight decay (coupled for sgd/adam, decoupled for adamw).") var weightDecay: Double = 5e-4
    @Option(help: "constant, step, cosine or onecycle.") var schedule: String = "cosine"
    @Option(help: "Linear warmup epochs (fractional allowed).") var warmupEpochs: Double = 0
    @Option(help: "Step schedule: decay every N epochs.") var stepEpochs: Int = 10
    @Option(help: "Step schedule: decay factor.") var stepGamma: Double = 0.1
    @Option(help: "BatchNorm kind: l2, l1 or linf.") var norm: String = "l2"
    @Option(help: "Ghost batch size for BatchNorm statistics.") var ghostBatchSize: Int?
    @Option(help: "Dropout probability.") var dropout: Double = 0.5
    @Option(help: "Label smoothing.") var labelSmoothing: Double = 0
    @Option(help: "Clip gradients to this global norm.") var clipNorm: Double?
    @Option(help: "Random-crop padding (0: off).") var cropPadding: Int = 0
    @Flag(help: "Random horizontal flips.") var flip = false
    @Flag(help: "Random erasing.") var erasing = false
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Threads (0: all cores).") var threads: Int = 0
    @Option(help: "Directory with the Fashion-MNIST IDX files.") var dataDir: String = FashionMNIST.defaultDirectory
    @Option(help: "Use only the first N training images (0: all).") var trainLimit: Int = 0
    @Option(help: "Use only the first N test images (0: all).") var testLimit: Int = 0
    @Option(help: "Run directory for metrics and checkpoints.") var output: String = "runs/latest"
    @Flag(help: "Resume from <output>/checkpoint.safetensors.") var resume = false
    @Option(help: "Split each batch into K micro-batches and accumulate gradients.") var microBatches: Int = 1
    @Option(help: "Gradient checkpointing: none, sqrt, or budget:BYTES (K/M/G suffixes).") var checkpoint: String = "none"
    @Option(help: "Compute precision: fp32, fp16 (with dynamic loss scaling) or bf16; master weights stay Float32.") var precision: String = "fp32"
    @Flag(help: "With fp16/bf16: run L1/L-inf batch norm in half (L2 always computes its statistics in Float32).") var halfBatchNorm = false
    @Option(help: "Fail before training if the planned peak of tensor memory exceeds BYTES (K/M/G suffixes).") var memoryCap: String?
    @Option(help: "Workspace budget of one convolution call (K/M/G suffixes; default 4M): lower trades speed for memory.") var workspaceLimit: String?
    @Flag(inversion: .prefixedNo, help: "conv2d: weight gradients of the layers the direct kernel takes also direct (default), or im2col + GEMM (see Conv2dDirect.weightGradient).") var directWeightGradient = true
    @Flag(help: "Print the memory report of the first training step (per tag, per layer, timeline).") var memoryReport = false
    @Option(help: "Also write the first step's memory report (with the full timeline) as JSON to this file.") var memoryJson: String?
    @Flag(help: "Data-parallel training over the MPI ranks this process was started with (mpirun or loom launch).") var dataParallel = false
    @Option(help: "Data parallel: gradient bucket cap in MiB (the first bucket is capped at 1 MiB).") var bucketCapMb: Double = 25
    @Flag(inversion: .prefixedNo, help: "Data parallel: all-reduce gradient buckets during backward (default: when the host has a core per rank for the communication thread, see DDPOptions.overlapHelps).") var overlap: Bool? = nil
    @Option(help: "Data parallel: allreduce algorithm: native (MPI_Allreduce), ring, halving-doubling or tree.") var allreduce: String = "native"
    @Option(help: "Data parallel: gradient format on the wire: none, float16 or bfloat16 (ring only).") var wire: String = "none"
    @Option(help: "Data parallel: send only this fraction of gradient chunks (top by norm, error feedback), e.g. 0.1.") var sparse: Double?
    @Option(help: "Data parallel: ZeRO-style sharding: stage 1 (optimizer state), 2 (+ gradients) or 3 (+ parameters, gathered per unit on demand).") var zeroStage: Int?
    @Option(help: "ZeRO stage 3: units gathered at a time: per-layer (each layer with parameters), top-level (the model's children) or whole.") var fsdpUnits: String = "per-layer"
    @Flag(inversion: .prefixedNo, help: "ZeRO stage 3: all-gather the next unit's parameters while the current unit computes (at most one unit ahead).") var fsdpPrefetch = true

    func makeConfig() -> TrainConfig {
        var c = TrainConfig()
        c.model = model; c.epochs = epochs; c.batchSize = batchSize; c.optimizer = optimizer; c.lr = lr
        c.momentum = momentum; c.nesterov = nesterov; c.weightDecay = weightDecay; c.schedule = schedule
        c.warmupEpochs = warmupEpochs; c.stepEpochs = stepEpochs; c.stepGamma = stepGamma; c.norm = norm
        c.ghostBatchSize = ghostBatchSize; c.dropout = dropout; c.labelSmoothing = labelSmoothing; c.clipNorm = clipNorm
        c.cropPadding = cropPadding; c.flip = flip; c.erasing = erasing; c.seed = seed; c.threads = threads
        c.dataDir = dataDir; c.trainLimit = trainLimit; c.testLimit = testLimit
        c.microBatches = microBatches == 1 ? nil : microBatches
        c.checkpointing = checkpoint == "none" ? nil : checkpoint
        c.precision = precision == "fp32" ? nil : precision
        c.halfBatchNorm = halfBatchNorm ? true : nil
        return c
    }

    func run() throws {
        do {
            var config = makeConfig()
            if let m = memoryCap {
                guard let b = parseByteCount(m), b > 0 else { throw ValidationError("--memory-cap '\(m)': expected a byte count such as 64M or 1G") }
                config.memoryCap = b
            }
            Conv2dDirect.weightGradient = directWeightGradient
            if let w = workspaceLimit {
                guard let b = parseByteCount(w), b > 0 else { throw ValidationError("--workspace-limit '\(w)': expected a byte count such as 1M") }
                config.workspaceLimit = b
            }
            if zeroStage != nil && !dataParallel { throw ValidationError("--zero-stage needs --data-parallel") }
            if dataParallel {
                guard MPIProcessGroup.isLaunchedByMPI else {
                    throw ValidationError("--data-parallel: this process was not started by mpirun; use `loom launch -np N -- train --data-parallel ...` or `mpirun -np N loom train --data-parallel ...`")
                }
                if config.threads == 0 { config.threads = 1 }  // one BLAS/kernel thread per rank: the ranks share the cores
            }
            let trainer = try Trainer(config: config, output: output)
            if dataParallel {
                guard let algorithm = AllReduceAlgorithm(rawValue: allreduce) else {
                    throw ValidationError("--allreduce '\(allreduce)': expected native, ring, halving-doubling or tree")
                }
                guard let compression = WireCompression(rawValue: wire) else {
                    throw ValidationError("--wire '\(wire)': expected none, float16 or bfloat16")
                }
                guard bucketCapMb > 0 else { throw ValidationError("--bucket-cap-mb \(bucketCapMb): expected a positive size") }
                if let f = sparse, !(f > 0 && f <= 1) { throw ValidationError("--sparse \(f): expected a fraction in (0, 1]") }
                let group = try MPIProcessGroup.world()
                var options = DDPOptions()
                options.bucketCapBytes = Int(bucketCapMb * 1_048_576)
                let (localRanks, cores) = localRanksAndCores()
                let autoOverlap = DDPOptions.overlapHelps(localRanks: localRanks, cores: cores, computeThreadsPerRank: config.threads)
                options.overlap = overlap ?? autoOverlap
                let overlapNote = overlap != nil ? "" : autoOverlap ? " (auto)"
                    : " (auto: \(localRanks) ranks x (\(config.threads) compute + 1 communication thread) > \(cores) cores; --overlap forces it)"
                options.collective = CollectiveOptions(algorithm: algorithm, compression: compression)
                options.sparse = sparse.map { SparseGradientOptions(fraction: $0) }
                if let z = zeroStage {
                    guard (1...3).contains(z) else { throw ValidationError("--zero-stage \(z): expected 1, 2 or 3") }
                    guard sparse == nil, compression == .none else { throw ValidationError("--zero-stage: --wire and --sparse apply to DDP's allreduce, not to the sharded update") }
                    let collective = CollectiveOptions(algorithm: algorithm == .native ? .native : .ring)
                    if z == 3 {
                        let units: FSDPUnitPolicy
                        switch fsdpUnits {
                        case "per-layer": units = .perLayer
                        case "top-level": units = .topLevel
                        case "whole": units = .wholeModel
                        default: throw ValidationError("--fsdp-units '\(fsdpUnits)': expected per-layer, top-level or whole")
                        }
                        let fsdp = try DataParallelTraining.attachFullySharded(trainer, group: group, units: units, collective: collective,
                                                                             prefetch: fsdpPrefetch)
                        if group.rank == 0 { print("ZeRO stage 3: \(fsdp.plan.units.count) units (\(fsdpUnits)), \(fsdp.localShardCount) parameters on rank 0 of \(trainer.model.parameterCount), prefetch \(fsdpPrefetch ? "on" : "off")") }
                    } else {
                        try DataParallelTraining.attachSharded(trainer, group: group, stage: ShardingStage(rawValue: z)!, collective: collective)
                    }
                } else {
                    try DataParallelTraining.attach(trainer, group: group, options: options)
                }
                if group.rank == 0 {
                    print("data parallel: \(group.size) ranks (\(group.backendName)), global batch \(config.batchSize), allreduce \(algorithm.rawValue), wire \(compression.rawValue)"
                          + (sparse.map { ", sparse \($0)" } ?? "") + (zeroStage.map { ", ZeRO stage \($0)" } ?? ", overlap \(options.overlap ? "on" : "off")\(overlapNote)"))
                }
            }
            for p in trainer.checkpointPlans {
                print("checkpoint plan for \(p.name.isEmpty ? "model" : p.name): \(p.plan) (planned activations \(formatBytes(p.plannedPeak)), without \(formatBytes(p.peakWithout)))")
            }
            if memoryReport || memoryJson != nil {
                let json = memoryJson
                trainer.onMemoryReport = { report in
                    print(report.text())
                    if let json {
                        do { try report.json().write(to: URL(fileURLWithPath: json)); print("wrote \(json)") } catch { print("could not write \(json): \(error)") }
                    }
                    fflush(nil)
                }
            }
            if resume {
                let path = output + "/checkpoint.safetensors"
                let ck = try Checkpoint.load(path)
                try trainer.restore(ck)
                print("resuming from \(path) at epoch \(ck.nextEpoch + 1)")
            }
            let results = try trainer.run()
            if dataParallel, let d = trainer.distributed {
                let steps = Double(Swift.max(trainer.optimizer.stepCount, 1))
                let sent = try d.sumOverRanks([Double(WireStats.bytesSent)])[0] / Double(d.size)
                if trainer.isPrimary {
                    print(String(format: "wire: %.1f MB sent per rank (%.1f KB a step) by Loom's own collectives%@", sent / 1e6, sent / steps / 1e3,
                                 allreduce == "native" && sparse == nil ? " (native MPI allreduce is not counted; use --allreduce ring)" : ""))
                }
            }
            if !trainer.isPrimary { return }
            if let last = results.last {
                print(String(format: "done: test accuracy %.2f%% after %d epochs; run directory %@", 100 * last.testAccuracy, last.epoch, output))
            } else {
                print("nothing to do: the checkpoint already completed \(trainer.nextEpoch) epochs (raise --epochs to continue)")
            }
        } catch let e as ArgumentParser.ValidationError {
            throw e
        } catch {
            throw CLIError(error)
        }
    }
}

/// `loom eval`: test accuracy and confusion matrix of a training checkpoint.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a training checkpoint on the Fashion-MNIST test set.")
    @Option(help: "A checkpoint.safetensors written by loom train.") var checkpoint: String
    @Option(help: "Directory with the Fashion-MNIST IDX files (default: the one the run used).") var dataDir: String?

    func run() throws {
        do {
            let ck = try Checkpoint.load(checkpoint)
            var cfg = ck.config
            if let d = dataDir { cfg.dataDir = d }
            cfg.testLimit = 0
            let trainer = try Trainer(config: cfg)
            try trainer.model.loadStateDict(ck.model)
            let (loss, cm) = trainer.evaluate()
            print("model \(cfg.model), epochs completed \(ck.nextEpoch)")
            print(String(format: "test accuracy %.2f%% (%d / %d), test loss %.4f", 100 * cm.accuracy, cm.correct, cm.total, loss))
            print(cm.table(names: FashionMNIST.classNames))
        } catch {
            throw CLIError(error)
        }
    }
}

/// `loom predict`: runs a model in eval mode on every tensor of a safetensors file.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a zoo model (eval mode) on the tensors of a safetensors file and write the outputs.",
        discussion: "Every input tensor [N, C, H, W] (any float dtype) gives an output tensor under the same name.")
    @Option(help: "Zoo model name.") var model: String
    @Option(help: "Weights: a safetensors state dict (PyTorch key names) or a loom checkpoint.") var weights: String
    @Option(help: "Input safetensors file.") var input: String
    @Option(help: "Output safetensors file.") var output: String
    @Option(help: "BatchNorm kind the weights were trained with.") var norm: String = "l2"

    func run() throws {
        do {
            var cfg = TrainConfig()
            cfg.norm = norm
            let m = try Zoo.make(model, options: Zoo.Options(norm: try cfg.batchNormKind()))
            let (w, meta) = try SafeTensors.load(weights)
            var dict = w
            if meta["format"] == "loom-checkpoint-1" {
                dict = [:]
                for (k, v) in w where k.hasPrefix("model.") { dict[String(k.dropFirst(6))] = v }
            }
            try m.loadStateDict(dict)
            m.eval()
            let (inputs, _) = try SafeTensors.load(input)
            let expected = try Zoo.entry(model).inputShape
            var outputs: [String: Tensor] = [:]
            for (name, x) in inputs.sorted(by: { $0.key < $1.key }) {
                guard x.rank == 4, Array(x.shape.dropFirst()) == expected, x.dtype.isFloatingPoint else {
                    throw ConfigError("\(input): tensor '\(name)' has shape \(shapeString(x.shape)) \(x.dtype); \(model) expects [N, \(expected.map(String.init).joined(separator: ", "))] floating point")
                }
                outputs[name] = noGrad { m(x.to(.float32)) }
                print("\(name): \(shapeString(x.shape)) -> \(shapeString(outputs[name]!.shape))")
            }
            try SafeTensors.save(outputs, to: output)
            print("wrote \(output)")
        } catch {
            throw CLIError(error)
        }
    }
}

/// `loom models`: the zoo with parameter counts and FLOPs per image.
struct Models_: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "List the model zoo with parameter counts and FLOPs per image.")
    func run() throws {
        print("model".padding(toLength: 15, withPad: " ", startingAt: 0) + "input          parameters   FLOPs/image  description")
        for e in Zoo.entries {
            let m = try Zoo.make(e.name)
            let s = ModelSummary(model: m, inputShape: e.inputShape)
            print(e.name.padding(toLength: 15, withPad: " ", startingAt: 0)
                  + shapeString(e.inputShape).padding(toLength: 15, withPad: " ", startingAt: 0)
                  + grouped(s.totalParameters).padding(toLength: 13, withPad: " ", startingAt: 0)
                  + grouped(s.totalFlops).padding(toLength: 15, withPad: " ", startingAt: 0) + e.summary)
        }
    }
}

/// `loom summary`: a per-layer table of a model.
struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a model's layer table (output shape, parameters, FLOPs, activation bytes).")
    @Option(help: "Zoo model name.") var model: String
    func run() throws {
        do {
            let e = try Zoo.entry(model)
            print("\(model): input [N, \(e.inputShape.map(String.init).joined(separator: ", "))], per sample:")
            print(ModelSummary(model: try Zoo.make(model), inputShape: e.inputShape).table)
        } catch {
            throw CLIError(error)
        }
    }
}

/// A runtime failure (bad file, bad checkpoint, bad data): printed as "Error: <message>"
/// without the usage text that ArgumentParser adds for flag errors.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ error: any Error) { description = "\(error)" }
}
