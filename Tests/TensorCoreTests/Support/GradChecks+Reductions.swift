import TensorCore

extension GradChecks {
    /// Reductions, softmax, sort/top-k and cumsum: multiple and negative dims, keepDim,
    /// non-contiguous inputs. Random normal inputs have no ties and no zeros, where
    /// max, amax, sort and the norms are differentiable.
    static var reductions: [String: [GradCheckCase]] {
        let a = randInput([3, 4]), nc = randInput([4, 3], contiguous: false), t3 = randInput([2, 3, 4])
        let t3nc = randInput([2, 4, 3], contiguous: false), v = randInput([5])
        return [
            "sum": [
                GradCheckCase(inputs: [a]) { $0[0].sum() },
                GradCheckCase(inputs: [nc]) { $0[0].sum(dims: [-1], keepDim: true) },
                GradCheckCase(inputs: [t3]) { $0[0].sum(dims: [0, 2]) },
            ],
            "mean": [
                GradCheckCase(inputs: [a]) { $0[0].mean() },
                GradCheckCase(inputs: [nc]) { $0[0].mean(dims: [0]) },
                GradCheckCase(inputs: [t3nc]) { $0[0].mean(dims: [-1, 0], keepDim: true) },
            ],
            "var": [
                GradCheckCase(inputs: [a]) { $0[0].variance(dims: [1]) },
                GradCheckCase(inputs: [nc]) { $0[0].variance(dims: [0], correction: 0, keepDim: true) },
                GradCheckCase(inputs: [t3nc]) { $0[0].variance(dims: [-1, 0]) },
                GradCheckCase(inputs: [t3]) { $0[0].variance() },
                GradCheckCase(inputs: [nc]) { $0[0].std(dims: [-1]) },
            ],
            "maxAlong": [
                GradCheckCase(inputs: [a]) { $0[0].max(dim: 1).values },
                GradCheckCase(inputs: [nc]) { $0[0].max(dim: -2, keepDim: true).values },
                GradCheckCase(inputs: [t3nc]) { $0[0].max(dim: 1).values },
            ],
            "minAlong": [
                GradCheckCase(inputs: [a]) { $0[0].min(dim: 0).values },
                GradCheckCase(inputs: [t3nc]) { $0[0].min(dim: -1, keepDim: true).values },
            ],
            "amax": [
                GradCheckCase(inputs: [a]) { $0[0].amax() },
                GradCheckCase(inputs: [t3nc]) { $0[0].amax(dims: [0, -1]) },
                GradCheckCase(inputs: [nc]) { $0[0].amax(dims: [1], keepDim: true) },
                GradCheckCase(inputs: [t3]) { $0[0].amin(dims: [1]) },
            ],
            "logsumexp": [
                GradCheckCase(inputs: [a]) { $0[0].logsumexp(dims: [1]) },
                GradCheckCase(inputs: [t3nc]) { $0[0].logsumexp(dims: [-1, 0], keepDim: true) },
                GradCheckCase(inputs: [nc]) { ($0[0] * 30.0).logsumexp(dims: [0, 1]) },
            ],
            "norm": [
                GradCheckCase(inputs: [a]) { $0[0].norm() },
                GradCheckCase(inputs: [nc]) { $0[0].norm(p: 2, dims: [-1]) },
                GradCheckCase(inputs: [t3nc]) { $0[0].norm(p: 1, dims: [0, 2]) },
                GradCheckCase(inputs: [nc]) { $0[0].norm(p: .infinity, dims: [0], keepDim: true) },
                GradCheckCase(inputs: [t3]) { $0[0].norm(p: .infinity) },
                GradCheckCase(inputs: [v]) { $0[0].norm(p: 3) },
                GradCheckCase(inputs: [t3nc]) { $0[0].norm(p: 0.5, dims: [1]) },
            ],
            "softmax": [
                GradCheckCase(inputs: [a]) { $0[0].softmax(dim: 1) },
                GradCheckCase(inputs: [nc]) { $0[0].softmax(dim: 0) },
                GradCheckCase(inputs: [t3nc]) { $0[0].softmax(dim: -2) },
            ],
            "logSoftmax": [
                GradCheckCase(inputs: [a]) { $0[0].logSoftmax(dim: -1) },
                GradCheckCase(inputs: [nc]) { $0[0].logSoftmax(dim: 0) },
                GradCheckCase(inputs: [t3nc]) { $0[0].logSoftmax(dim: 1) },
            ],
            "sort": [
                GradCheckCase(inputs: [a]) { $0[0].sorted(dim: 1).values },
                GradCheckCase(inputs: [nc]) { $0[0].sorted(dim: 0, descending: true).values },
                GradCheckCase(inputs: [t3nc]) { $0[0].sorted().values * 2.0 },
            ],
            "topk": [
                GradCheckCase(inputs: [a]) { $0[0].topk(2, dim: 1).values },
                GradCheckCase(inputs: [nc]) { $0[0].topk(3, dim: 0, largest: false, sorted: false).values },
                GradCheckCase(inputs: [t3nc]) { $0[0].topk(1, dim: -2).values },
            ],
            "cumsum": [
                GradCheckCase(inputs: [a]) { $0[0].cumsum(dim: 1) },
                GradCheckCase(inputs: [nc]) { $0[0].cumsum(dim: 0) },
                GradCheckCase(inputs: [t3nc]) { $0[0].cumsum(dim: -2) * $0[0] },
            ],
        ]
    }
}
