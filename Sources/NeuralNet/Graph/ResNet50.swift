/// `keras.applications.ResNet50(include_top=False)` (ResNet v1: the stride sits
/// on the first 1x1 convolution of a block) plus the GAP + Dense head.
/// Layer names are those of `keras/src/applications/resnet.py`.
public enum ResNet50 {
    public static func graph(height: Int, width: Int, classes: Int) throws(NeuralNetError) -> Graph {
        var b = GraphBuilder()
        let input = b.buffer(height: height, width: width, channels: 3)
        // ZeroPadding2D(3) + 7x7/2 'valid', then ZeroPadding2D(1) + MaxPool 3x3/2 'valid'.
        var x = try b.conv("conv1_conv", batchNorm: "conv1_bn", hasBias: true, input, filters: 64,
                           kernel: (7, 7), stride: 2, padding: .explicit(.uniform(3)))
        x = try b.pool(.max, x, size: 3, stride: 2, padding: .explicit(.uniform(1)))

        for (stage, filters, blocks, firstStride) in [(2, 64, 3, 1), (3, 128, 4, 2), (4, 256, 6, 2), (5, 512, 3, 2)] {
            for block in 1...blocks {
                let name = "conv\(stage)_block\(block)"
                let stride = block == 1 ? firstStride : 1
                let shortcut = block == 1
                    ? try b.conv("\(name)_0_conv", batchNorm: "\(name)_0_bn", hasBias: true, x, filters: 4 * filters,
                                 kernel: (1, 1), stride: stride, padding: .valid, relu: false)
                    : x
                var y = try b.conv("\(name)_1_conv", batchNorm: "\(name)_1_bn", hasBias: true, x, filters: filters,
                                   kernel: (1, 1), stride: stride, padding: .valid)
                y = try b.conv("\(name)_2_conv", batchNorm: "\(name)_2_bn", hasBias: true, y, filters: filters,
                               kernel: (3, 3), padding: .same)
                x = try b.conv("\(name)_3_conv", batchNorm: "\(name)_3_bn", hasBias: true, y, filters: 4 * filters,
                               kernel: (1, 1), padding: .valid, residual: shortcut)
            }
        }
        let logits = b.classifierHead(x, classes: classes)
        return Graph(buffers: b.buffers, operations: b.operations, input: input, output: logits)
    }
}
