import Foundation
import Collectives
import Layers
import Optimizers
import TensorCore

/// The cross-check behind `loom ddp-check`: data-parallel training on a real group (MPI
/// under `mpirun`, or in-process ranks) against one process training on the full batch,
/// which every rank computes locally as the oracle.
///
/// Cases: DDP on an MLP (float64, float32) and a CNN (float32, small buckets, overlap
/// off), fp16 wire compression (bounded deviation), `noSync` accumulation, SyncBatchNorm
/// under DDP against BatchNorm2d, sharded stages 1 and 2 (Adam) against DDP + Adam, and
/// the unused-parameter error. Batches are `2 · 3 · size` samples so every world size
/// divides them. Tolerances are looser than the in-process tests' because MPI's own
/// allreduce/reduce-scatter orders are unspecified (see each case). Verdicts are combined
/// across ranks (a case passes only if it passes on every rank).
public enum DataParallelCheck {
    /// One checked case.
    public struct Case: Sendable {
        /// What was checked.
        public var name: String
        /// True if every rank passed.
        public var passed: Bool
        /// This rank's measurement or first failure.
        public var detail: String
    }

    static let steps = 3

    static func mlp(_ seed: UInt64) -> Module {
        let g = Generator(seed: seed)
        return Sequential([Linear(5, 8, generator: g), Tanh(), Linear(8, 3, generator: g)])
    }

    static func cnn(_ seed: UInt64, norm: ((Int) -> Module)? = nil) -> Module {
        let g = Generator(seed: seed)
        var layers: [Module] = [Conv2d(2, 4, kernelSize: (3, 3), padding: (1, 1), generator: g)]
        if let norm { layers.append(norm(4)) }
        layers += [ReLU(), MaxPool2d(kernel: 2), Flatten(), Linear(16, 3, generator: g)]
        return Sequential(layers)
    }

    static func toDType(_ m: Module, _ dtype: DType) -> Module {
        if dtype != .float32 { for p in m.parameters { p.value = p.value.detached().to(dtype).contiguous().requiringGrad() } }
        return m
    }

    static func applyStep(_ opt: inout Optimizer, _ model: Module) {
        let params = model.parameters
        var values = params.map { _ in Tensor.zeros([0]) }
        for i in params.indices { swap(&values[i], &params[i].value) }
        opt.step(&values)
        for i in params.indices { swap(&values[i], &params[i].value) }
    }

    static func state(_ m: Module) -> [Double] {
        m.parameters.flatMap { $0.value.doubles() } + m.namedBuffers().flatMap { $0.1.value.doubles() }
    }

    struct Data {
        var inputs: [Tensor], labels: [Tensor]
        init(batch: Int, sample: [Int], dtype: DType, seed: UInt64) {
            let g = Generator(seed: seed)
            inputs = (0..<DataParallelCheck.steps).map { _ in Tensor.randn([batch] + sample, dtype: dtype, generator: g) }
            labels = (0..<DataParallelCheck.steps).map { _ in Tensor.randint(0, 3, [batch], generator: g) }
        }
        func local(_ t: Int, rank: Int, size: Int) -> (Tensor, Tensor) {
            let b = inputs[t].shape[0] / size
            return (inputs[t].narrowed(dim: 0, start: rank * b, length: b).contiguous(),
                    labels[t].narrowed(dim: 0, start: rank * b, length: b).contiguous())
        }
    }

    /// One process, full batches: the oracle.
    static func single(_ model: Module, _ data: Data, _ t: any GradientTransformation) -> [Double] {
        var opt = Optimizer(t, params: model.parameters.map(\.value))
        for s in 0..<steps {
            Loss.crossEntropy(logits: model(data.inputs[s]), targets: data.labels[s]).backward()
            applyStep(&opt, model)
            model.zeroGrad()
        }
        return state(model)
    }

    /// This rank's share under DDP.
    static func ddp(_ model: Module, _ g: any ProcessGroup, _ data: Data, _ t: any GradientTransformation, _ options: DDPOptions) throws -> [Double] {
        let ddp = try DistributedDataParallel(model, group: g, options: options)
        var opt = Optimizer(t, params: model.parameters.map(\.value))
        for s in 0..<steps {
            let (x, y) = data.local(s, rank: g.rank, size: g.size)
            Loss.crossEntropy(logits: ddp(x), targets: y).backward()
            try ddp.finishGradientSync()
            applyStep(&opt, model)
            model.zeroGrad()
        }
        ddp.removeHooks()
        return state(model)
    }

    static func compare(_ a: [Double], _ b: [Double], tolerance: Double) -> String {
        guard a.count == b.count else { return "\(a.count) values vs \(b.count)" }
        var worst = 0.0
        for (u, v) in zip(a, b) { worst = max(worst, abs(u - v)) }
        return worst <= tolerance ? "" : "max diff \(worst) > tolerance \(tolerance)"
    }

    /// Runs every case on `group` (collective: all ranks call it); `log` gets each case.
    public static func run(group g: any ProcessGroup, log: (Case) -> Void) throws -> [Case] {
        let p = g.size, rank = g.rank
        var cases: [Case] = []
        func record(_ name: String, _ detail: String) throws {
            var ok: [Int32] = [detail.isEmpty ? 1 : 0]
            try ok.withUnsafeMutableBufferPointer { try g.allReduce(CollectiveBuffer($0), op: .min) }
            let c = Case(name: name, passed: ok[0] == 1, detail: detail)
            cases.append(c)
            log(c)
        }
        let batch = 6 * p
        let seedFor: (UInt64) -> UInt64 = { rank == 0 ? $0 : $0 + 1000 }
        let sgd01 = try sgd(lr: 0.1)

        // 1–2. MLP, float64 and float32 (MPI sums in its own order: a few ulps).
        for (dtype, tol) in [(DType.float64, 1e-12), (.float32, 2e-6)] {
            let data = Data(batch: batch, sample: [5], dtype: dtype, seed: 7)
            let oracle = single(toDType(mlp(42), dtype), data, sgd01)
            let mine = try ddp(toDType(mlp(seedFor(42)), dtype), g, data, sgd01, DDPOptions())
            try record("ddp mlp \(dtype) world \(p) vs one process (tol \(tol))", compare(mine, oracle, tolerance: tol))
        }
        // 3. CNN, small buckets, overlap off.
        do {
            let data = Data(batch: batch, sample: [2, 4, 4], dtype: .float32, seed: 8)
            let oracle = single(cnn(42), data, sgd01)
            let mine = try ddp(cnn(seedFor(42)), g, data, sgd01, DDPOptions(bucketCapBytes: 100, firstBucketCapBytes: 8, overlap: false))
            try record("ddp cnn float32 small buckets, overlap off, world \(p) (tol 2e-6)", compare(mine, oracle, tolerance: 2e-6))
        }
        // 4. fp16 on the wire (ring): bounded deviation.
        do {
            let data = Data(batch: batch, sample: [5], dtype: .float32, seed: 7)
            let oracle = single(mlp(42), data, sgd01)
            let mine = try ddp(mlp(seedFor(42)), g, data, sgd01, DDPOptions(collective: CollectiveOptions(algorithm: .ring, compression: .float16)))
            try record("ddp mlp fp16 wire world \(p) (bound 5e-4)", compare(mine, oracle, tolerance: 5e-4))
        }
        // 5. noSync: two micro-steps equal one step on both micro-batches.
        do {
            let data = Data(batch: batch, sample: [5], dtype: .float64, seed: 11)
            let both = Tensor.cat([data.inputs[0], data.inputs[1]], dim: 0), bothY = Tensor.cat([data.labels[0], data.labels[1]], dim: 0)
            let ref = toDType(mlp(42), .float64)
            var refOpt = Optimizer(sgd01, params: ref.parameters.map(\.value))
            Loss.crossEntropy(logits: ref(both), targets: bothY).backward()
            applyStep(&refOpt, ref)
            let model = toDType(mlp(seedFor(42)), .float64)
            let d = try DistributedDataParallel(model, group: g)
            var opt = Optimizer(sgd01, params: model.parameters.map(\.value))
            let (x0, y0) = data.local(0, rank: rank, size: p), (x1, y1) = data.local(1, rank: rank, size: p)
            d.noSync { (Loss.crossEntropy(logits: d(x0), targets: y0) * 0.5).backward() }
            (Loss.crossEntropy(logits: d(x1), targets: y1) * 0.5).backward()
            try d.finishGradientSync()
            applyStep(&opt, model)
            d.removeHooks()
            try record("ddp noSync accumulation float64 world \(p) (tol 1e-12)", compare(state(model), state(ref), tolerance: 1e-12))
        }
        // 6. SyncBatchNorm under DDP vs BatchNorm2d in one process (float64).
        do {
            let data = Data(batch: batch, sample: [2, 4, 4], dtype: .float64, seed: 13)
            let momentum = try sgd(lr: 0.1, momentum: 0.9)
            let oracle = single(toDType(cnn(42) { BatchNorm2d($0) }, .float64), data, momentum)
            let mine = try ddp(toDType(cnn(seedFor(42)) { SyncBatchNorm($0, group: g) }, .float64), g, data, momentum,
                               DDPOptions(bucketCapBytes: 128, firstBucketCapBytes: 32))
            try record("syncbn cnn under ddp float64 world \(p) (tol 1e-6: running stats are float32)", compare(mine, oracle, tolerance: 1e-6))
        }
        // 7. Sharded stages vs DDP + Adam (MPI's reduce-scatter and allreduce may sum in
        //    different orders: tolerance, not bitwise).
        do {
            let data = Data(batch: batch, sample: [2, 4, 4], dtype: .float32, seed: 3)
            let t = try adam(lr: 0.01)
            let reference = try ddp(cnn(seedFor(42)), g, data, t, DDPOptions())
            for stage in ShardingStage.allCases {
                let model = cnn(seedFor(42))
                let opt = try ShardedOptimizer(model, group: g, transformation: t, stage: stage, bucketCapBytes: 64)
                for s in 0..<steps {
                    let (x, y) = data.local(s, rank: rank, size: p)
                    Loss.crossEntropy(logits: model(x), targets: y).backward()
                    try opt.step()
                    model.zeroGrad()
                }
                opt.removeHooks()
                try record("sharded \(stage) adam world \(p) vs ddp + adam (tol 1e-6)", compare(state(model), reference, tolerance: 1e-6))
            }
        }
        // 8. The unused-parameter error names the parameters, rank and step.
        do {
            let g2 = Generator(seed: 1)
            let used = Linear(3, 2, generator: g2), unused = Linear(3, 2, generator: g2)
            let model = Sequential([used, unused])
            let d = try DistributedDataParallel(model, group: g)
            Loss.mseLoss(used(Tensor.ones([1, 3])), Tensor.zeros([1, 2])).backward()
            var message = "no error"
            do { try d.finishGradientSync() } catch { message = error.description }
            d.removeHooks()
            let expected = "rank \(rank), step 0: DDP: 2 of 4 parameters received no gradient in this backward: '1.weight', '1.bias'; expected every parameter to take part in the loss (pass findUnusedParameters: true to allow this)"
            try record("ddp unused-parameter error world \(p)", message == expected ? "" : "got: \(message)")
        }
        return cases
    }
}
