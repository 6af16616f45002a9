import Foundation
import TensorCore

/// Runs `module` on `x` under gradient checkpointing: its intermediates are not kept, and
/// backward recomputes them (see `TensorCore.checkpoint(_:preserveRNGState:_:)`).
///
/// The module's parameters become inputs of the checkpoint node, so they receive
/// gradients even when `x` does not require grad (the classic failure of checkpointing a
/// network's first segment). During the recomputation each parameter's value is swapped
/// for a fresh leaf over the same storage and restored afterwards; the outer backward then
/// accumulates the parameter gradients, so their hooks fire as in an ordinary pass.
public func checkpoint(_ module: Module, _ x: Tensor, preserveRNGState: Bool = true) -> Tensor {
    checkpointLayers([module], x, preserveRNGState: preserveRNGState)
}

/// Runs `layers` in order on `x` as one checkpointed segment.
public func checkpointLayers(_ layers: [Module], _ x: Tensor, preserveRNGState: Bool = true) -> Tensor {
    let params = layers.flatMap(\.parameters)
    let inputs = [x] + params.map(\.value)
    return checkpoint(inputs, preserveRNGState: preserveRNGState) { xs in
        let saved = params.map(\.value)
        for (p, v) in zip(params, xs.dropFirst()) { p.value = v }
        defer { for (p, v) in zip(params, saved) { p.value = v } }
        return layers.reduce(xs[0]) { $1($0) }
    }
}

extension Sequential {
    /// Runs the layers following `plan`: recomputed segments under checkpointing, stored
    /// segments as usual. With no plan (or outside recording) it is the plain forward.
    func forwardSegments(_ x: Tensor, plan: CheckpointPlan) -> Tensor {
        precondition(plan.layerCount == layers.count,
                     "Sequential: checkpoint plan covers \(plan.layerCount) layers, the module has \(layers.count)")
        var h = x
        for segment in plan.segments {
            let slice = Array(layers[segment.range])
            if segment.recompute && GradMode.isEnabled && !GradMode.isRecomputing {
                h = checkpointLayers(slice, h)
            } else {
                h = slice.reduce(h) { $1($0) }
            }
        }
        return h
    }
}

/// Measures what each layer of every `Sequential` costs during one recorded forward pass.
///
/// Install with `LayerProfiler.$current.withValue(profiler) { model(x) }` in grad mode:
/// each Sequential then runs its layers one at a time and records, per layer, the bytes
/// its forward left alive (live bytes after the layer, with the previous layer's output
/// released unless the graph keeps it, minus the same before it), its output bytes and
/// its forward time. `@unchecked Sendable`: the table is guarded by a lock.
public final class LayerProfiler: @unchecked Sendable {
    @TaskLocal public static var current: LayerProfiler?
    private var table: [ObjectIdentifier: [LayerCost]] = [:]
    private let lock = NSLock()

    public init() {}

    /// The costs measured for `sequential` (nil if it did not run).
    public func costs(of sequential: Sequential) -> [LayerCost]? {
        lock.lock(); defer { lock.unlock() }
        return table[ObjectIdentifier(sequential)]
    }

    func run(_ seq: Sequential, _ x: Tensor) -> Tensor {
        var costs: [LayerCost] = []
        let base = Memory.stats().current
        var prevKept = 0
        var h = x
        for layer in seq.layers {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let out = layer(h)
            let t1 = DispatchTime.now().uptimeNanoseconds
            h = out
            let kept = Memory.stats().current - base
            costs.append(LayerCost(savedBytes: Swift.max(kept - prevKept, 0), outputBytes: out.count * out.dtype.byteSize,
                                   forwardCost: Double(t1 - t0) / 1e9))
            prevKept = kept
        }
        lock.lock()
        table[ObjectIdentifier(seq)] = costs
        lock.unlock()
        return h
    }
}

/// Plans and installs gradient checkpointing on the outermost `Sequential`s of a model.
public enum Checkpointing {
    /// One planned Sequential: its dotted name, plan, measured costs and planned peak.
    public struct PlannedSequential {
        public let name: String
        public let module: Sequential
        public let plan: CheckpointPlan
        public let costs: [LayerCost]
        /// Planned activation peak with the plan, and without checkpointing.
        public let plannedPeak: Int
        public let peakWithout: Int
    }

    /// Measures layer costs on `input` (one recorded forward, run twice so the timing is
    /// warm), chooses a plan per outermost Sequential with `policy`, and installs it
    /// (`Sequential.checkpointPlan`). A `.budget` is split over the Sequentials in
    /// proportion to their peaks without checkpointing. The model's parameters, buffers
    /// (BatchNorm running statistics) and the default generator are left as they were.
    @discardableResult
    public static func apply(_ policy: CheckpointPolicy, to model: Module, input: Tensor) throws(CheckpointPlanError) -> [PlannedSequential] {
        let targets = outermostSequentials(of: model)
        for (_, s) in targets { s.checkpointPlan = nil }
        if case .none = policy { return [] }
        let profiler = LayerProfiler()
        // Forward passes change buffers (BatchNorm running statistics) and draw from the
        // generator; parameters are untouched (no optimizer step). Restore both.
        let buffers = model.namedBuffers().map { ($0.1, $0.1.value) }
        let rng = Generator.default.currentState
        for _ in 0..<2 {
            _ = LayerProfiler.$current.withValue(profiler) { enableGrad { model(input) } }
        }
        model.zeroGrad()
        for (b, v) in buffers { b.value = v }
        Generator.default.currentState = rng
        var measured: [(String, Sequential, [LayerCost], Int)] = []
        for (name, s) in targets {
            guard let costs = profiler.costs(of: s) else { continue }
            measured.append((name, s, costs, CheckpointPlanner.plannedPeak(.none(layers: costs.count), costs: costs)))
        }
        let totalWithout = measured.reduce(0) { $0 + $1.3 }
        var out: [PlannedSequential] = []
        for (name, s, costs, without) in measured {
            let p: CheckpointPolicy
            if case .budget(let b) = policy, totalWithout > 0 {
                p = .budget(bytes: Swift.max(1, Int(Double(b) * Double(without) / Double(totalWithout))))
            } else {
                p = policy
            }
            let plan: CheckpointPlan
            do {
                plan = try CheckpointPlanner.plan(costs, policy: p)
            } catch {
                throw CheckpointPlanError("\(name.isEmpty ? "model" : name): \(error.description)")
            }
            s.checkpointPlan = plan
            out.append(PlannedSequential(name: name, module: s, plan: plan, costs: costs,
                                         plannedPeak: CheckpointPlanner.plannedPeak(plan, costs: costs), peakWithout: without))
        }
        return out
    }

    /// Sequentials not nested inside another Sequential, with their dotted names ("" for the model itself).
    public static func outermostSequentials(of model: Module) -> [(String, Sequential)] {
        var out: [(String, Sequential)] = []
        func visit(_ name: String, _ m: Module) {
            if let s = m as? Sequential {
                out.append((name, s))
                return
            }
            for (child, c) in m.namedChildren() { visit(name.isEmpty ? child : "\(name).\(child)", c) }
        }
        visit("", model)
        return out
    }
}
