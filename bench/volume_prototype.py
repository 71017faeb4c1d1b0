#!/usr/bin/env python3
"""The prototype of `--shift-form openvino`'s volume (stop 54, issue 8): torchvision's ResNet-50 (the
seeded weights of bench/overhead.py) written by hand on each clip as a volume `[N, C, T, H, W]`,
BatchNorms folded, every convolution 3D of depth 1, the stream form's split convolutions around each
site, and each head shifted along T in one of three ways:

- dw: a depthwise Conv3d with a 3-tap kernel over T, one tap set per channel (what the tool writes);
- slicepad: each group sliced on T, padded with a zero frame, the two joined on channels;
- none: no shift (the volume alone, not TSM: how much the layout itself costs or saves).

The first site (64 channels after the stem) shifts the whole tensor by a depthwise convolution with
identity taps for the channels that stay. Checked against a PyTorch TSM of the same weights
(printed), then exported at opset 17 with the batch symbolic, as bench/overhead.py exports:

    python bench/volume_prototype.py dw /tmp/h-bench/resnet50/s5_dw.onnx
    python bench/overhead.py --runtime openvino --model resnet50 --mode offline --no-standard \\
        --variant s5dw=/tmp/h-bench/resnet50/s5_dw.onnx
"""
import copy, os, sys
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
T=8; FD=8
HERE=os.path.dirname(os.path.abspath(__file__)); sys.path.insert(0,HERE); sys.path.insert(0,os.path.join(HERE,"..","fixtures"))
import verify_full as vf
m2=vf.build("resnet50").eval()
def fold(conv,bn):
    s=bn.weight/torch.sqrt(bn.running_var+bn.eps)
    w=conv.weight*s[:,None,None,None]; b=bn.bias-bn.running_mean*s
    return w.detach().unsqueeze(2), b.detach()   # 5D weight [O,I,1,kh,kw]
def shift2d(x):
    nt,c,h,w=x.shape; n=nt//T; f=c//FD
    x=x.view(n,T,c,h,w); out=torch.zeros_like(x)
    out[:,:-1,:f]=x[:,1:,:f]; out[:,1:,f:2*f]=x[:,:-1,f:2*f]; out[:,:,2*f:]=x[:,:,2*f:]
    return out.view(nt,c,h,w)
ref=copy.deepcopy(m2)
class S2(nn.Module):
    def __init__(s,c): super().__init__(); s.c=c
    def forward(s,x): return s.c(shift2d(x))
for l in [ref.layer1,ref.layer2,ref.layer3,ref.layer4]:
    for b in l: b.conv1=S2(b.conv1)
MODE=sys.argv[1]  # dw | slicepad | none
def shift5(x,f):   # x [n, 2f, T, H, W]: channels [0,f) take t+1, [f,2f) take t-1
    if MODE=="none": return x
    if MODE=="dw":
        w=torch.zeros(2*f,1,3,1,1); w[:f,0,2]=1; w[f:,0,0]=1
        return F.conv3d(x,w,padding=(1,0,0),groups=2*f)
    a=F.pad(x[:,:f,1:],(0,0,0,0,0,1)); b=F.pad(x[:,f:,:-1],(0,0,0,0,1,0))
    return torch.cat([a,b],1)
def full_shift5(x,c):
    if MODE=="none": return x
    f=c//FD
    w=torch.zeros(c,1,3,1,1); w[:f,0,2]=1; w[f:2*f,0,0]=1; w[2*f:,0,1]=1
    return F.conv3d(x,w,padding=(1,0,0),groups=c)
class Net(nn.Module):
    def __init__(s,m):
        super().__init__()
        s.stem=fold(m.conv1,m.bn1); s.blocks=[]
        for l in [m.layer1,m.layer2,m.layer3,m.layer4]:
            for b in l:
                d=dict(c1=fold(b.conv1,b.bn1),c2=fold(b.conv2,b.bn2),c3=fold(b.conv3,b.bn3),stride=b.stride,
                       ds=fold(b.downsample[0],b.downsample[1]) if b.downsample is not None else None,
                       ds_stride=b.downsample[0].stride if b.downsample is not None else None)
                s.blocks.append(d)
        s.fcw=m.fc.weight.detach(); s.fcb=m.fc.bias.detach()
    def forward(s,x):
        n=x.shape[0]//T
        y=x.view(n,T,3,x.shape[2],x.shape[3]).transpose(1,2)
        w,b=s.stem; y=F.relu(F.conv3d(y,w,b,(1,2,2),(0,3,3)))
        y=nn.MaxPool3d((1,3,3),(1,2,2),(0,1,1))(y)
        # first block: whole-tensor shift (64 channels), residual placement
        xh=xr=None; xfull=y
        for i,d in enumerate(s.blocks):
            w1,b1=d['c1']; w2,b2=d['c2']; w3,b3=d['c3']
            nxt=s.blocks[i+1]['c1'][0].shape[1] if i+1<len(s.blocks) else None  # next block's C
            if xfull is not None:
                a=F.relu(F.conv3d(full_shift5(xfull,w1.shape[1]),w1,b1))
            else:
                h2=2*(w1.shape[1]//FD); f=h2//2
                a=F.relu(F.conv3d(shift5(xh,f),w1[:,:h2])+F.conv3d(xr,w1[:,h2:],b1))
            st=d['stride']
            a=F.relu(F.conv3d(a,w2,b2,(1,st,st),(0,1,1)))
            C=w3.shape[0]; H2=2*(C//FD) if nxt is not None else C
            if d['ds'] is not None:
                wd,bd=d['ds']; ss=d['ds_stride'][0]
                src=xfull
                if xfull is not None:
                    idh=F.conv3d(src,wd[:H2],bd[:H2],(1,ss,ss)); idr=F.conv3d(src,wd[H2:],bd[H2:],(1,ss,ss))
                else:
                    h2=2*(wd.shape[1]//FD)
                    idh=F.conv3d(xh,wd[:H2,:h2],None,(1,ss,ss))+F.conv3d(xr,wd[:H2,h2:],bd[:H2],(1,ss,ss))
                    idr=F.conv3d(xh,wd[H2:,:h2],None,(1,ss,ss))+F.conv3d(xr,wd[H2:,h2:],bd[H2:],(1,ss,ss))
            else:
                idh,idr=xh,xr
            if nxt is None:
                yfull=F.relu(F.conv3d(a,w3,b3)+torch.cat([idh,idr],1)); break
            xh=F.relu(F.conv3d(a,w3[:H2],b3[:H2])+idh); xr=F.relu(F.conv3d(a,w3[H2:],b3[H2:])+idr); xfull=None
        y=yfull.mean((3,4)).transpose(1,2).reshape(n*T,-1)
        return F.linear(y,s.fcw,s.fcb)
net=Net(m2).eval()
x=torch.randn(8,3,224,224)
with torch.no_grad():
    r=ref(x); o=net(x); print(MODE,(o-r).abs().max().item(), r.abs().max().item())
torch.onnx.export(net,(torch.zeros(2*T,3,224,224),),sys.argv[2],opset_version=17,dynamo=False,
    input_names=["input"],output_names=["logits"],dynamic_axes={"input":{0:"batch"},"logits":{0:"batch"}})
