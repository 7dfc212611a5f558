#!/usr/bin/env python3
"""Per-pair cosine between two `relbert embed --format jsonl` outputs (same pairs, same order)."""
import json,sys,math
def load(f):
    return [json.loads(l)["vector"] for l in open(f)]
a=load(sys.argv[1]); b=load(sys.argv[2])
cs=[]
for x,y in zip(a,b):
    d=sum(p*q for p,q in zip(x,y)); nx=math.sqrt(sum(p*p for p in x)); ny=math.sqrt(sum(q*q for q in y))
    cs.append(d/(nx*ny))
cs.sort()
print(f"n={len(cs)} min={cs[0]:.6f} p1={cs[len(cs)//100]:.6f} median={cs[len(cs)//2]:.6f} below0.999={sum(c<0.999 for c in cs)}")
