"""Column names of the kernel's struct-of-arrays state (plain integer constants, so
Numba folds them). Each group is one 2-D array: rows are calls, engines, steps,
workflows; columns are these fields. Units: tokens for token counts, seconds for times.

The kernel sees each group as one flat row-major array (``flat``) and indexes it
``row * N_X + column`` (``ci[c * S.N_CI + S.C_STEP]``): the row width is then a constant
Numba folds, where a 2-D index multiplies by the array's width read at run time. With some
thirty arrays alive in the kernel, those widths did not stay in registers: W1 runs 3% fewer
instructions and 5-7% faster flat (bench/README.md, "Round 15").
"""

# call states
ST_DELAYED = 0   # created, waiting out a tool-call delay before entering its buffer
ST_WAITING = 1   # in its buffer's waiting list (never admitted, or preempted)
ST_PREFILL = 2   # admitted, prefill (re)computation unfinished
ST_DECODE = 3    # admitted, prefill done, decoding
ST_DONE = 4

# batch entry phases; PH_PREEMPT marks an iteration log row for a preemption (not a batch entry)
PH_PREFILL = 0
PH_DECODE = 1
PH_PREEMPT = 2

# batch-time model codes
BT_CONSTANT = 0
BT_STAIRCASE = 1
BT_PIECEWISE = 2
BT_AFFINE = 3

# policy codes (choice among the buffers waiting at one engine)
POL_FCFS = 0
POL_PRIORITY = 1
POL_MAX_PRESSURE = 2
POL_STRICT = 3     # strict class priority inside the batch: admissions and decode tokens by rank
STRICT_SHIFT = 40  # strict priority: C_ASEQ = rank << STRICT_SHIFT | admission number

# call int columns (ci)
C_JOB = 0
C_STEP = 1
C_P = 2            # prompt tokens as drawn
C_D = 3            # decode tokens as drawn
C_STATE = 4
C_PREF_NEED = 5    # prefill tokens to compute now (prompt + tokens decoded before a preemption)
C_PREF_DONE = 6
C_DEC_DONE = 7     # up to date except while decoding: then it is C_D - (its target - E_ROUND)
C_KV = 8           # KV-cache tokens allocated at admission (a decoding call grown on
                   #   demand holds prompt + tokens decoded, derived when needed)
C_PREEMPT = 9
C_SEQ = 10         # FCFS key: order of entering the buffer
C_NEXT = 11        # list links: the waiting list of its buffer, or (admitted, prefill
C_PREV = 12        #   unfinished) its engine's prefill list
C_ASEQ = 13        # admission order at its engine (renewed when readmitted after a preemption)
N_CI = 14

# call float columns (cf), seconds
F_CREATED = 0
F_READY = 1        # entered its buffer (the "arrival" at its engine)
F_ADMIT = 2        # first admission (start of first prefill)
F_FIRST = 3        # first token: end of the iteration that completed the first prefill
F_FINISH = 4
N_CF = 5

# engine int columns (ei)
E_BUDGET = 0
E_KMAX = 1
E_KV_CAP = 2
E_SCHED = 3
E_POLICY = 4
E_BT_MODEL = 5
E_NRUN = 6         # admitted calls: prefill list + decode queue
E_KV_USED = 7
E_NWAIT = 8
E_NDEC = 9         # decoding calls: the decode queue's length
E_BUSY = 10
E_BATCH_N = 11     # batch entries (prefill chunks + decode tokens): slots used
E_BATCH_OFF = 12   # the engine's region of the prefill-entry arrays (batch_c, batch_t)
E_RUN_OFF = 13     # the engine's region of the decode-queue arrays (dec_call, dec_tgt)
E_RUN_CAP = 14
E_ITERS = 15
E_BACKLOG = 16     # unfinished work of calls at the engine, tokens (incl. recompute)
E_PREEMPTS = 17
E_RESERVE_FULL = 18  # 1: reserve prompt+output at admission (no growth, no preemption)
E_DEC_HEAD = 19    # first decoder, index within the engine's decode-queue region
E_ROUND = 20       # decode rounds: a decoder's remaining tokens are its target - E_ROUND
E_DEC_LB = 21      # a lower bound of the decoders' targets (no finish while > E_ROUND)
E_PF_HEAD = 22     # prefill list (admitted, prefill unfinished), admission order; -1: empty
E_PF_TAIL = 23
E_ADMITS = 24      # admissions so far: the next C_ASEQ
E_CTX = 25         # sum over decoders of prefill-done + decode-done tokens (affine batch time)
E_NPE = 26         # this batch: prefill entries (explicit, in batch_c/batch_t)
E_DEC_K = 27       # this batch: decode tokens (implicit: the first E_DEC_K decoders)
E_DEC_POS = 28     # this batch: prefill entries before the decode tokens (the log's order)
E_BATCH_TOK = 29   # this batch: tokens (prefill + decode)
E_BATCH_PREF = 30  # this batch: prefill tokens
E_MAXRUN = 31      # max_running_requests (vLLM max_num_seqs): admission stops at this many running
E_BLOCK = 32       # KV block size, tokens: a call holding L KV tokens holds ceil(L/B) blocks
E_WATERMARK = 33   # KV tokens an admission must leave free (vLLM's watermark x the cache)
E_PF_PAIRS = 34    # this batch: prefill attention pairs, sum over chunks of k*(done + (k+1)/2)
E_BT_ATTN = 35     # 1: the batch time has context/attention terms (piecewise + attention)
N_EI = 36
NO_TARGET = 1 << 62  # E_DEC_LB of an empty decode queue
# The decode queue's targets (dec_tgt) are int32: its passes (serve_decoders) then compare
# and move twice the targets per vector instruction (bench/README.md, round 10).
# A target is E_ROUND plus at most workload.MAX_TOKENS remaining tokens, and an engine's
# rounds are rebased to 0 when E_ROUND reaches ROUND_REBASE: 2**30 + 10**7 < 2**31 - 1.
TGT_NONE32 = (1 << 31) - 1  # the int32 scans' "no target" (above any target)
ROUND_REBASE = 1 << 30

# engine float columns (ef)
EF_BT0 = 0
EF_BT1 = 1
EF_BT2 = 2
EF_BT3 = 3
EF_ITER_START = 4
# (EF_BT4, the prefill-attention coefficient, is column 10: appended to keep the others)
EF_ITER_END = 5
EF_AREA_WAIT = 6
EF_AREA_RUN = 7
EF_AREA_BACKLOG = 8
EF_BUSY_TIME = 9
EF_BT4 = 10        # affine: seconds per prefill attention pair (quadratic prefill attention)
EF_BT5 = 11        # piecewise + attention: seconds per decode token
EF_BT6 = 12        # piecewise + attention: seconds per prefill token
N_EF = 13

# step (buffer) int columns (si)
S_ENGINE = 0
S_HEAD = 1
S_TAIL = 2
S_NWAIT = 3
S_NCOUNT = 4       # calls of this step at its engine (waiting + running)
S_JOIN_NEED = 5    # parents that must finish before the step starts (<= 1: not a join)
S_JOIN_IDX = 6
S_POOL_POS = 7     # next unused entry of the prompt/output pools
S_POOL_END = 8
S_POOL_FINAL = 9   # 1: pools hold every call this step will ever have (no refill)
S_DELAY_KIND = 10  # 0 none, 1 fixed, 2 drawn from the delay pool
S_DPOOL_POS = 11
S_DPOOL_END = 12
S_RANK = 13        # static priority rank at its engine (0 = highest)
S_NREP = 14        # replicas of the step's engine (a pool): on the step's first row, whose
                   #   calls are routed to one of rows first..first+NREP-1 when ready
S_ROUTER = 15      # pool router (R_* codes), on the first row
S_RR = 16          # round-robin position, on the first row
S_RNG = 17         # router random state (MINSTD), on the first row
N_SI = 18

# pool routers
R_ROUND_ROBIN = 0
R_RANDOM = 1
R_JSQ_TOKENS = 2       # least unprocessed tokens (E_BACKLOG)
R_LEAST_REQUESTS = 3   # least outstanding requests (waiting + running), Vidur's LOR
R_POWER_OF_TWO = 4     # two random replicas, the one with fewer unprocessed tokens

# step float columns (sf)
SF_DELAY = 0       # fixed delay, seconds
SF_MU = 1          # max-pressure service-rate weight (1 / mean tokens of a call)
N_SF = 2

# workflow (job) columns
J_CLASS = 0
J_ACTIVE = 1       # calls of the workflow created and not finished
N_JI = 2
JF_ARRIVAL = 0
JF_FINISH = 1
N_JF = 2

# global int scalars (gi)
G_NCALLS = 0
G_NEXT_JOB = 1
G_SEQ = 2
G_HEAP_N = 3
G_REC_N = 4
G_ROUTE_POS = 5
G_ROUTE_FINAL = 6
G_LOG_N = 7
G_LOG_CAP = 8       # 0: no iteration log
G_LOG_MARGIN = 9
G_MARGIN = 10
G_TOK_IN = 11       # tokens of work that entered buffers (P + D per call)
G_TOK_DONE = 12     # tokens processed (including recomputation after preemption)
G_TOK_RECOMPUTE = 13
G_JOBS_IN = 14      # workflows in the system
G_JOBS_DONE = 15
G_CALLS_DONE = 16
G_POOLS_OPEN = 17     # steps whose pools may still grow (S_POOL_FINAL 0): the room check scans steps only then
G_DQ_LOW = 18         # 1 once a push left a decode queue's region short of room (core._apply_batch); 0 when grown
N_GI = 19

# global float scalars (gf)
GF_NOW = 0
GF_T_LAST = 1
GF_NEXT_SAMPLE = 2
GF_SAMPLE_DT = 3
GF_AREA_JOBS = 4
N_GF = 5

# the state arrays the kernel takes flat, in run_kernel's order (and by these parameter names
# everywhere in the kernel)
FLAT = ("ci", "cf", "ei", "ef", "si", "sf", "ji", "jf")


def flat(a):
    """The 1-D view of a C-contiguous state array that the kernel takes (never a copy: the
    kernel's writes must land in ``a``; numpy refuses the shape change rather than copy)."""
    v = a.view()
    v.shape = (a.size,)
    return v
