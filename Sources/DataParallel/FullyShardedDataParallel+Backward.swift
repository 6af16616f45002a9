import Collectives
import TensorCore

/// The backward half of `FullyShardedDataParallel`: the hook that gathers a unit before its
/// VJPs run, and the post-accumulate hooks that reduce-scatter a complete unit's gradients
/// and free its full gradients and parameters.
extension FullyShardedDataParallel {
    // MARK: - Backward hooks

    /// The unit's output gradient is final: gather the unit before its VJPs run.
    func beforeBackward(_ u: Int) {
        do { try gather(u, phase: "backward") } catch { hookErrors.append(error.description) }
        // Backward visits the units in reverse: gather the previous one while this one runs.
        prefetchGather(u - 1)
    }

    /// Parameter `i`'s gradient is final for this backward; a complete unit is reduced and freed.
    func gradientReady(_ i: Int) {
        let u = unitOf[i]
        if ready[i] {
            hookErrors.append("parameter '\(parameterNames[i])' received its gradient twice in one backward")
            return
        }
        ready[i] = true
        pending[u] -= 1
        guard pending[u] == 0 else { return }
        reduceGradients(u)
        for j in plan.units[u].parameters { ready[j] = false }
        pending[u] = plan.units[u].parameters.count
        release(u)
    }

    /// Reduce-scatters (averages) unit `u`'s full gradients into this rank's gradient shard
    /// (adding to it when the unit was already reduced in this step) and clears `.grad`.
    func reduceGradients(_ u: Int) {
        let rank = group.rank, w = dtype.byteSize
        let map = unitMaps[u], mine = map.ranges[rank]
        let accumulate = reducedThisStep[u] > 0
        let dst = shardGrad.storageBlock.pointer + (unitBase[u]) * w
        let scratch: Tensor? = accumulate ? Memory.withTag(.gradients) { Tensor.zeros([map.counts[rank]], dtype: dtype) } : nil
        let recvBase = scratch.map { $0.storageBlock.pointer } ?? dst
        var inFlight: [(Int, Tensor, CollectiveWork)] = []
        for (k, i) in plan.units[u].parameters.enumerated() {
            let p = parameters[i].value
            let n = map.parameterCounts[k]
            guard let g0 = p.grad else { continue }  // unreachable: the hook fired
            guard n > 0 else { continue }
            let g = g0.isContiguous && g0.dtype == dtype ? g0 : g0.to(dtype).contiguous()
            let range = map.parameterOffsets[k]..<(map.parameterOffsets[k] + n)
            let counts = map.counts(within: range)
            let lo = max(range.lowerBound, mine.lowerBound)
            let send = CollectiveBuffer(g.storageBlock.pointer + g.offset * w, count: n, dtype: dtype)
            let recv = CollectiveBuffer(counts[rank] == 0 ? nil : recvBase + (lo - mine.lowerBound) * w, count: counts[rank], dtype: dtype)
            inFlight.append((i, g, group.reduceScatterAsync(send: send, recv: recv, counts: counts, op: .average, options: collective)))
        }
        for (i, _, work) in inFlight {
            do { try work.wait() } catch {
                hookErrors.append("rank \(rank), step \(stepCounter): FSDP: reduce-scatter of the gradient of '\(parameterNames[i])' (unit '\(plan.units[u].name)') failed: \(error)")
            }
        }
        inFlight = []
        for i in plan.units[u].parameters { parameters[i].value.grad = nil }
        if let scratch {
            let n = map.counts[rank]
            if dtype == .float32 {
                let a = dst.assumingMemoryBound(to: Float.self), b = scratch.storageBlock.pointer.assumingMemoryBound(to: Float.self)
                for e in 0..<n { a[e] += b[e] }
            } else {
                let a = dst.assumingMemoryBound(to: Double.self), b = scratch.storageBlock.pointer.assumingMemoryBound(to: Double.self)
                for e in 0..<n { a[e] += b[e] }
            }
        }
        reducedThisStep[u] += 1
    }
}
