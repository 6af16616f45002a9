import TensorCore

extension GradChecks {
    /// Gather, scatter-add, index-select and embedding, with repeated indices.
    static var indexing: [String: [GradCheckCase]] {
        let a = randInput([3, 4]), nc = randInput([4, 5], contiguous: false), t3 = randInput([2, 3, 4])
        // Index [3, 2] into dim 1 of a [3, 4]: repeated entries in row 1.
        let idx = try! Tensor([Int64(0), 3, 2, 2, 1, 0], shape: [3, 2])
        let idx32 = try! Tensor([Int32(1), 1, 0, 3, 3, 2, 0, 1], shape: [2, 4])          // dim 0 of a [4, 5]
        let idx3 = try! Tensor([Int64(2), 0, 1, 1, 0, 2], shape: [1, 2, 3])           // dim 1 of a [2, 3, 4] (extents smaller)
        let src = randInput([3, 2], seed: 5), srcBig = randInput([3, 3], seed: 6)
        let sel = Tensor([Int64(2), 0, 2, 1, 2])
        let weight = randInput([5, 3]), weightNC = randInput([5, 3], contiguous: false)
        let tokens = try! Tensor([Int64(4), 1, 4, 0, 1, 4], shape: [2, 3])
        return [
            "gather": [
                GradCheckCase(inputs: [a]) { $0[0].gather(dim: 1, index: idx) },
                GradCheckCase(inputs: [nc]) { $0[0].gather(dim: 0, index: idx32) },
                GradCheckCase(inputs: [t3]) { $0[0].gather(dim: -2, index: idx3) },
            ],
            "scatterAdd": [
                GradCheckCase(inputs: [a, src]) { $0[0].scatterAdd(dim: 1, index: idx, source: $0[1]) },
                // Source larger than the index: the unused part gets zero gradient.
                GradCheckCase(inputs: [a, srcBig]) { $0[0].scatterAdd(dim: 1, index: idx, source: $0[1]) * 2.0 },
                GradCheckCase(inputs: [nc, randInput([2, 4], contiguous: false, seed: 8)]) { $0[0].scatterAdd(dim: 0, index: idx32, source: $0[1]) },
            ],
            "indexSelect": [
                GradCheckCase(inputs: [a]) { $0[0].indexSelect(dim: 0, index: sel.narrowed(dim: 0, start: 0, length: 3)) },
                GradCheckCase(inputs: [nc]) { $0[0].indexSelect(dim: 1, index: sel) },
                GradCheckCase(inputs: [t3]) { $0[0].indexSelect(dim: -1, index: Tensor([Int32(3), 3, 0])) },
            ],
            "embedding": [
                GradCheckCase(inputs: [weight]) { Tensor.embedding(tokens, weight: $0[0]) },
                GradCheckCase(inputs: [weightNC]) { Tensor.embedding(Tensor([Int64(2), 2, 2, 0]), weight: $0[0]) * $0[0].sum() },
            ],
        ]
    }
}
