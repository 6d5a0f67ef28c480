"""Job specs: what a job is, validated whole (types, limits, shapes) before anything is enqueued."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared import defaults, kinds, metric_names, shapes
from shared.defaults import TRAIN
from shared.errors import BadInput
from shared.tensors import WIRE_DTYPES
from shared.vocab import Activation, Device, Grad, Kind, Loss, Op, OpDtype, TrainDtype

# Strict: `true` is not a size, and "64" in a job file is a typo worth reporting, not coercing.
Seed = Annotated[int, Field(ge=0, le=2**63 - 1, strict=True)]
LayerSize = Annotated[int, Field(ge=1, le=defaults.MAX_LAYER_SIZE, strict=True)]
Dims = Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=defaults.MAX_TENSOR_DIMS)]


class _Spec(BaseModel):
    # Unknown keys are rejected loudly: a typo in a job file must not silently become a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataTensor(_Spec):
    """A tensor carried in the message: dtype + shape + base64 of the raw little-endian bytes."""

    source: Literal["data"] = "data"
    dtype: OpDtype
    shape: Dims
    data: str

    @model_validator(mode="after")
    def _bytes_match_shape(self) -> DataTensor:
        _check_elements(self.shape)
        try:
            size = len(base64.b64decode(self.data, validate=True))
        except (binascii.Error, ValueError) as e:
            raise ValueError("data is not valid base64") from e
        if size != shapes.numel(self.shape) * WIRE_DTYPES[self.dtype].itemsize:
            raise ValueError(f"{size} bytes do not hold {self.dtype} of shape {shapes.fmt(self.shape)}")
        return self


class RandnTensor(_Spec):
    """A tensor the worker draws with torch.randn from the job's seed (float32, like torch.randn)."""

    source: Literal["randn"] = "randn"
    shape: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=defaults.MAX_TENSOR_DIMS)]

    @model_validator(mode="after")
    def _within_limit(self) -> RandnTensor:
        _check_elements(self.shape)
        return self

    @property
    def dtype(self) -> str:
        return "float32"


TensorInput = Annotated[DataTensor | RandnTensor, Field(discriminator="source")]


class TensorOpSpec(_Spec):
    """`op(a, b)` with torch semantics; operands drawn with randn use `seed`, a first then b."""

    kind: Literal[Kind.OP] = Kind.OP
    op: Op
    a: TensorInput
    b: TensorInput
    seed: Seed | None = None
    dtype: OpDtype | None = None  # cast both operands to this before the op
    device: Device = Device.AUTO

    @model_validator(mode="after")
    def _shapes_agree(self) -> TensorOpSpec:
        if self.seed is None and (self.a.source == "randn" or self.b.source == "randn"):
            raise ValueError("randn operands need a seed")
        _check_elements(self.result_shape, "result")
        return self

    @property
    def result_shape(self) -> tuple[int, ...]:
        return shapes.result_shape(self.op, self.a.shape, self.b.shape)

    def describe(self) -> str:
        a_dt, b_dt = self.operand_dtypes
        return (f"{self.op} {shapes.fmt(self.a.shape)}:{a_dt} {shapes.fmt(self.b.shape)}:{b_dt} "
                f"-> {shapes.fmt(self.result_shape)} device={self.device}")

    @property
    def operand_dtypes(self) -> tuple[str, str]:
        return (self.dtype or self.a.dtype, self.dtype or self.b.dtype)

    @property
    def result_dtype(self) -> str:
        """torch's promotion of the two operands' dtypes, for every op (matmul too: see worker/ops.py); but true
        division of two integers gives torch's default float, float32."""
        common = promote(*self.operand_dtypes)
        return "float32" if self.op is Op.DIV and not common.startswith("float") else common


class DataRef(_Spec):
    """A dataset the job trains on, by reference: its blob is stored once, under its hash (shared/datasets.py)."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]  # a file's name, or a bundled dataset's
    rows: Annotated[int, Field(ge=2, strict=True)]
    inputs: LayerSize
    outputs: LayerSize
    classes: Annotated[int, Field(ge=2, strict=True)] | None = None  # y holds class ids 0..classes-1


class TrainSpec(_Spec):
    """The study note's two-layer network trained by plain gradient descent, on `torch.randn` rows or on a
    dataset (`data`): then the seed fixes the split, the initial weights and the mini-batch order."""

    kind: Literal[Kind.TRAIN] = Kind.TRAIN
    # every default is shared/defaults.py's TRAIN, which the CLI's --help shows without importing this module;
    # batch_size None (with data only): every training row, every iteration
    batch_size: LayerSize | None = TRAIN.batch_size
    input_size: LayerSize = TRAIN.input_size
    hidden_size: LayerSize = TRAIN.hidden_size
    output_size: LayerSize = TRAIN.output_size
    lr: float = Field(TRAIN.lr, gt=0, allow_inf_nan=False)
    iterations: int = Field(TRAIN.iterations, ge=1, le=defaults.MAX_ITERATIONS, strict=True)
    seed: Seed = TRAIN.seed
    activation: Activation = Activation(TRAIN.activation)
    loss: Loss = Loss(TRAIN.loss)
    grad: Grad = Grad(TRAIN.grad)
    dtype: TrainDtype = TrainDtype(TRAIN.dtype)
    device: Device = Device.AUTO
    fast: bool = False  # the fast path: manual gradients in preallocated buffers, in-place updates
    cuda_graph: bool = False  # the fast path captured once as a CUDA graph and replayed (CUDA only)
    tf32: bool = False  # let float32 matmuls use TF32 tensor cores (CUDA only)
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)  # seconds of training; then `failed`
    checkpoint_every: int | None = Field(None, ge=1, strict=True)  # iterations; None: about every 30 s
    allow_nonfinite: bool = False  # run on through inf/nan losses (the note's loop) instead of failing `diverged`
    data: DataRef | None = None  # None: torch.randn rows, as the note has it
    val_fraction: float | None = Field(None, gt=0, lt=1, allow_inf_nan=False)  # rows held out (a seeded split)
    standardize: bool = False  # inputs scaled by the training split's mean and std
    eval_every: int | None = Field(None, ge=1, strict=True)  # iterations; None: 20 evaluations a run

    def describe(self) -> str:
        rows = f"{self.data.name}[{self.data.rows}]" if self.data else str(self.batch_size)
        batch = f" batch={self.batch_size}" if self.data and self.batch_size else ""
        held = f" val={self.val_fraction:g}" if self.val_fraction else ""
        return (f"train {rows}x{self.input_size}->{self.hidden_size}->{self.output_size} "
                f"{self.activation}/{self.loss} {self.grad} {self.dtype} lr={self.lr:g}{batch}{held} "
                f"iterations={self.iterations} seed={self.seed} device={self.device}")

    @property
    def rows(self) -> int:
        """Rows of x: the dataset's, or the batch of torch.randn rows."""
        return self.data.rows if self.data else self.batch_size or TRAIN.batch_size

    @property
    def evaluated(self) -> list[str]:
        """The metrics measured apart from the step (shared/metric_names.py KNOWN): accuracy for a classifier, the
        held-out loss (and accuracy) when rows are held out."""
        if self.data is None and self.eval_every is None:  # torch.randn rows: only when asked for (--eval-every)
            return []
        held = [metric_names.VAL_LOSS, *([metric_names.VAL_ACCURACY] if self.loss is Loss.CE else [])]
        return [*([metric_names.ACCURACY] if self.loss is Loss.CE else []), *(held if self.val_fraction else [])]

    @property
    def evaluation_every(self) -> int:
        """The held-out metrics (and accuracy) are measured every this many iterations, and at the end."""
        return self.eval_every or max(1, self.iterations // 20)

    @field_validator("lr", "timeout", mode="before")
    @classmethod
    def _a_number_not_a_bool(cls, v: object) -> object:
        if isinstance(v, bool):
            raise ValueError("must be a number")
        return v

    @model_validator(mode="after")
    def _fits(self) -> TrainSpec:
        b, i, h, o = self.rows, self.input_size, self.hidden_size, self.output_size
        total = b * i + b * o + i * h + h * o
        if total > defaults.MAX_TRAIN_ELEMENTS:
            raise ValueError(f"x, y, w1 and w2 hold {total:,} elements, over the limit of "
                             f"{defaults.MAX_TRAIN_ELEMENTS:,}")
        if self.loss is Loss.CE and o < 2:
            raise ValueError("--loss ce needs --output-size of at least 2 (classes)")
        if (self.fast or self.cuda_graph) and self.grad is not Grad.MANUAL:
            raise ValueError("the fast path computes the hand-derived gradients: use --grad manual")
        if self.cuda_graph and self.device is Device.CPU:
            raise ValueError("--cuda-graph needs a CUDA device: use --device cuda or auto")
        self._fits_its_data()
        return self

    def _fits_its_data(self) -> None:
        if self.eval_every is not None and not self.evaluated:
            raise ValueError("--eval-every: nothing to evaluate (accuracy needs --loss ce; held-out metrics need a "
                             "dataset and --val-fraction)")
        data = self.data
        if data is None:
            for name, given in (("val-fraction", self.val_fraction), ("standardize", self.standardize)):
                if given:
                    raise ValueError(f"--{name} needs a dataset: give --data FILE or --dataset NAME")
            if self.batch_size is None:
                raise ValueError("batch-size: the rows torch.randn draws need a number")
            return
        if data.classes is not None and self.loss is not Loss.CE:
            raise ValueError(f"the data's y holds class ids: train it with --loss ce (or give {data.outputs} "
                             "float targets per row for --loss sse)")
        if self.val_fraction is not None:
            held = round(data.rows * self.val_fraction)
            if held < 1 or held > data.rows - 1:
                raise ValueError(f"--val-fraction {self.val_fraction:g} of {data.rows} rows holds out {held}: "
                                 "leave at least one row on each side")
        if self.batch_size is not None and self.batch_size > data.rows:
            raise ValueError(f"--batch-size {self.batch_size} is more than the data's {data.rows} rows")
        if self.batch_size is not None and (self.fast or self.cuda_graph):
            raise ValueError("the fast path trains on the whole training split each iteration: drop --batch-size "
                             "(or --fast/--cuda-graph)")

    @model_validator(mode="before")
    @classmethod
    def _sizes_from_data(cls, data: object) -> object:
        """With a dataset, the layer sizes at both ends are the data's, and a given one must agree; the batch is
        every training row unless --batch-size says otherwise."""
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            return data
        ref, filled = data["data"], dict(data)
        filled.setdefault("batch_size", None)
        for field, key, what in (("input_size", "inputs", "inputs"), ("output_size", "outputs", "outputs")):
            have = ref.get(key)
            given = filled.get(field)
            if given is not None and isinstance(have, int) and given != have:
                noun = "classes" if key == "outputs" and ref.get("classes") else what
                raise ValueError(f"--{field.replace('_', '-')} {given} disagrees with the data's {have} {noun} "
                                 "(leave it out: it comes from the data)")
            filled[field] = have
        return filled

    @model_validator(mode="before")
    @classmethod
    def _fast_means_manual(cls, data: object) -> object:
        # --fast and --cuda-graph imply --grad manual unless a grad was given
        if isinstance(data, dict) and (data.get("fast") or data.get("cuda_graph")) and data.get("grad") is None:
            return {**data, "grad": "manual"}
        return data


class RunSpec(_Spec):
    """A user's job function (an entry point in the group tensorq.jobs) run with these params; the seed seeds
    torch's global RNG before the call and is the function's `ctx.seed`."""

    kind: Literal[Kind.RUN] = Kind.RUN
    function: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
    params: dict[str, JsonValue] = Field(default_factory=dict)  # what JSON can say
    seed: Seed | None = None  # chosen and recorded at submit when not given (seed_randn)
    device: Device = Device.AUTO
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)  # seconds; then `failed` at its next report

    def describe(self) -> str:
        params = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"run {self.function}{' ' + params if params else ''} seed={self.seed} device={self.device}"


AnySpec = TensorOpSpec | TrainSpec | RunSpec
JobSpec = Annotated[AnySpec, Field(discriminator="kind")]
_JOB_SPEC: TypeAdapter[AnySpec] = TypeAdapter(JobSpec)


def seed_randn(spec: dict[str, Any]) -> dict[str, Any]:
    """A job drawing randn operands without a seed gets one, recorded in its spec so it can be rerun (the
    CLI, the client and job files alike)."""
    entry = kinds.find(spec.get("kind"))
    operands = [spec.get(name) for name in entry.operands] if entry else []
    sources = [o.get("source") for o in operands if isinstance(o, dict)]
    if spec.get("seed") is None and ("randn" in sources or entry is not None and entry.kind is Kind.RUN):
        return {**spec, "seed": secrets.randbelow(2**31)}
    return spec


def parse_spec(data: object) -> AnySpec:
    """A spec from a dict (a message, a job file, CLI flags); any problem raises BadInput in one line."""
    try:
        return _JOB_SPEC.validate_python(data)
    except ValidationError as e:
        raise BadInput(one_line(e)) from None


def one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    if loc and loc[0] in Kind.values():  # the discriminator's tag, not a field
        loc = loc[1:]
    if len(loc) >= 2 and loc[0] in ("a", "b") and loc[1] in ("data", "randn"):
        del loc[1]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] in ("union_tag_invalid", "union_tag_not_found") and not loc:
        loc, message = ["kind"], "must be " + " or ".join(repr(k) for k in Kind.values())
    elif first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc, message = [*loc, "source"], "must be 'data' or 'randn'"
    elif first["type"] == "model_attributes_type":
        message = "a job spec must be an object"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    where = ".".join(loc).replace("_", "-")
    text = f"{where}: {message}{more}" if where else f"{message}{more}"
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text  # one line, always


def describe(spec: AnySpec) -> str:
    """A short one-line description: what Flower shows as the task's arguments."""
    return spec.describe()


def promote(a: str, b: str) -> str:
    """torch's type promotion between two op dtypes: a float wins over an integer (int64 with float32 is
    float32, not numpy's float64), else the wider of the two."""
    def rank(name: str) -> tuple[bool, int]:
        return name.startswith("float"), WIRE_DTYPES[name].itemsize

    return max(a, b, key=rank)


def _check_elements(shape: list[int] | tuple[int, ...], what: str = "tensor") -> None:
    n = shapes.numel(shape)
    if n > defaults.MAX_TENSOR_ELEMENTS:
        raise ValueError(f"{what} of shape {shapes.fmt(shape)} has {n:,} elements, over the limit of "
                         f"{defaults.MAX_TENSOR_ELEMENTS:,}")
