import TensorKernels

extension Tensor {
    /// Copies `source`'s values into this tensor in place (broadcasting, converting dtype),
    /// keeping this tensor's leaf autograd node: parameters stay the same leaves, so hooks
    /// registered on them survive (like PyTorch's `param.data.copy_(src)`).
    public mutating func copy_(_ source: Tensor) {
        precondition(gradNode == nil || gradNode!.isLeaf,
                     "copy_: cannot overwrite a non-leaf tensor produced by '\(gradNode!.op)'")
        let _ = checked { () throws(TensorError) in try ShapeRules.broadcast(source.shape, shape, op: "copy_") }
        let src = (source.dtype == dtype ? source : source.to(dtype)).detached()
        let node = gradNode
        makeUniqueDense()
        copyInto(shape: shape, strides: strides, offset: offset, from: src)
        gradNode = node
    }
}
