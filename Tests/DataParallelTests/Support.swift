import XCTest
import Collectives
import Layers
import Optimizers
import TensorCore
@testable import DataParallel

/// Builds a model from a seed (each rank calls it with its own seed; DDP's broadcast
/// from rank 0 then makes the replicas equal to the seed-`base` model).
typealias ModelBuilder = @Sendable (_ seed: UInt64) -> Module

/// A small MLP: 5 -> 8 -> 3 with tanh.
let mlpBuilder: ModelBuilder = { seed in
    let g = Generator(seed: seed)
    return Sequential([Linear(5, 8, generator: g), Tanh(), Linear(8, 3, generator: g)])
}

/// A small CNN without BatchNorm: [N, 2, 4, 4] -> conv 3x3 (4 ch) -> relu -> maxpool 2 -> linear 16 -> 3.
let cnnBuilder: ModelBuilder = { seed in
    let g = Generator(seed: seed)
    return Sequential([Conv2d(2, 4, kernelSize: (3, 3), padding: (1, 1), generator: g), ReLU(),
                       MaxPool2d(kernel: 2), Flatten(), Linear(16, 3, generator: g)])
}

/// Converts every parameter of `m` to `dtype` (fresh leaves).
func convert(_ m: Module, to dtype: DType) -> Module {
    if dtype != .float32 {
        for p in m.parameters { p.value = p.value.detached().to(dtype).contiguous().requiringGrad() }
    }
    return m
}

/// One batch per step: inputs and integer labels.
struct Batches: Sendable {
    var inputs: [Tensor]
    var labels: [Tensor]

    init(inputs: [Tensor], labels: [Tensor]) {
        self.inputs = inputs
        self.labels = labels
    }

    /// `steps` random batches of `batch` samples shaped `sample`, 3 classes.
    init(steps: Int, batch: Int, sample: [Int], dtype: DType, seed: UInt64) {
        let g = Generator(seed: seed)
        inputs = (0..<steps).map { _ in Tensor.randn([batch] + sample, dtype: dtype, generator: g) }
        labels = (0..<steps).map { _ in Tensor.randint(0, 3, [batch], generator: g) }
    }

    /// Rank `rank`'s contiguous share of step `t`'s batch (B/N samples).
    func local(_ t: Int, rank: Int, size: Int) -> (Tensor, Tensor) {
        let b = inputs[t].shape[0] / size
        return (inputs[t].narrowed(dim: 0, start: rank * b, length: b).contiguous(),
                labels[t].narrowed(dim: 0, start: rank * b, length: b).contiguous())
    }
}

/// Applies one optimizer step to `model`'s parameters in place (as Trainer does).
func optimizerStep(_ opt: inout Optimizer, _ model: Module) {
    let params = model.parameters
    var values = params.map { _ in Tensor.zeros([0]) }
    for i in params.indices { swap(&values[i], &params[i].value) }
    opt.step(&values)
    for i in params.indices { swap(&values[i], &params[i].value) }
}

/// Parameter values as Doubles (registration order).
func weights(_ m: Module) -> [[Double]] { m.parameters.map { $0.value.doubles() } }

/// The largest absolute difference between two weight lists (same layout).
func maxAbsDiff(_ a: [[Double]], _ b: [[Double]]) -> Double {
    precondition(a.count == b.count, "maxAbsDiff: \(a.count) vs \(b.count) tensors")
    var m = 0.0
    for (x, y) in zip(a, b) {
        precondition(x.count == y.count)
        for (u, v) in zip(x, y) { m = max(m, abs(u - v)) }
    }
    return m
}

/// The single-process oracle: `steps` SGD steps on the full batches.
func trainSingle(_ build: ModelBuilder, dtype: DType, data: Batches, steps: Int, lr: Double = 0.1,
                 makeOpt: (([Tensor]) -> Optimizer)? = nil) -> [[Double]] {
    let model = convert(build(42), to: dtype)
    var opt = makeOpt?(model.parameters.map(\.value)) ?? Optimizer(try! sgd(lr: lr), params: model.parameters.map(\.value))
    for t in 0..<steps {
        let loss = Loss.crossEntropy(logits: model(data.inputs[t]), targets: data.labels[t])
        loss.backward()
        optimizerStep(&opt, model)
        model.zeroGrad()
    }
    return weights(model)
}

/// N in-process ranks with DDP, each on its B/N share; returns every rank's final weights.
func trainDDP(_ build: @escaping ModelBuilder, size: Int, dtype: DType, data: Batches, steps: Int, lr: Double = 0.1,
              options: DDPOptions = DDPOptions()) throws -> [[[Double]]] {
    try InProcessWorld.run(size: size) { group in
        // Rank 0 builds the oracle's model; the others start elsewhere (the broadcast fixes it).
        let model = convert(build(group.rank == 0 ? 42 : 1000 + UInt64(group.rank)), to: dtype)
        let ddp = try DistributedDataParallel(model, group: group, options: options)
        var opt = Optimizer(try sgd(lr: lr), params: model.parameters.map(\.value))
        for t in 0..<steps {
            let (x, y) = data.local(t, rank: group.rank, size: size)
            let loss = Loss.crossEntropy(logits: ddp(x), targets: y)
            loss.backward()
            try ddp.finishGradientSync()
            optimizerStep(&opt, model)
            model.zeroGrad()
        }
        return weights(model)
    }
}
