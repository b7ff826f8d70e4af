"""Keras' Adam, AdamW and SGD with TensorFlow's fused update kernels.

Keras 3's optimizers update each variable with about fifteen small ops (casts, the bias-correction
powers recomputed per variable, three assignments). For a DenseNet-121 (364 trainable variables)
that is over 5,000 ops in the training graph: they cost a third of its tracing and, on two CPU
cores, almost half of each steady step. These subclasses compute the step's shared scalars once
and update each variable with one fused kernel, the ones ``tf.keras`` 2 used
(``ResourceApplyAdam``, ``ResourceApplyKerasMomentum``), which implement the same formulas:

- Adam: ``m += (g - m)(1 - b1)``, ``v += (g² - v)(1 - b2)``,
  ``w -= lr √(1 - b2^t) / (1 - b1^t) · m / (√v + ε)``;
- SGD with momentum μ: ``a = μa - lr·g``, then ``w += μa - lr·g`` (Nesterov) or ``w += a``.

Weight decay, gradient clipping, schedules and loss scaling stay Keras' own (they run before the
update). Where the fused kernels do not apply (another Keras backend than TensorFlow, a distribution
strategy's replica context, AMSGrad, a non-float32 variable, gradient accumulation) the Keras update
runs unchanged. The one numerical
difference: the kernels form ``1 - b1`` in float32 where Keras forms it in float64 and rounds, a
difference in the last bit of each step's factors."""

import keras


def _fusable(optimizer, variables) -> bool:
    if keras.backend.backend() != "tensorflow":  # the kernels are TensorFlow's: elsewhere Keras' own update
        return False
    import tensorflow as tf
    return (not tf.distribute.has_strategy() and not optimizer.gradient_accumulation_steps
            and all(variable.dtype == "float32" for variable in variables))


def _handle(variable):
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


class _FusedAdamUpdate:
    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        import tensorflow as tf
        if self.amsgrad or not _fusable(self, trainable_variables):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1, beta_2 = tf.constant(self.beta_1, tf.float32), tf.constant(self.beta_2, tf.float32)
        shared = {"beta1_power": tf.pow(beta_1, step), "beta2_power": tf.pow(beta_2, step),
                  "lr": tf.cast(learning_rate, tf.float32), "beta1": beta_1, "beta2": beta_2,
                  "epsilon": tf.constant(self.epsilon, tf.float32)}
        for gradient, variable in zip(grads, trainable_variables):
            index = self._get_variable_index(variable)
            tf.raw_ops.ResourceApplyAdam(var=_handle(variable), m=_handle(self._momentums[index]),
                                         v=_handle(self._velocities[index]), grad=tf.cast(gradient, tf.float32),
                                         **shared)


@keras.saving.register_keras_serializable(package="imgclf")
class FusedAdam(_FusedAdamUpdate, keras.optimizers.Adam):
    """``keras.optimizers.Adam``, each variable updated by one ``ResourceApplyAdam``."""


@keras.saving.register_keras_serializable(package="imgclf")
class FusedAdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` (decoupled decay applied by Keras first), fused Adam update."""


@keras.saving.register_keras_serializable(package="imgclf")
class FusedSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD``; with momentum, each variable updated by one ``ResourceApplyKerasMomentum``."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        import tensorflow as tf
        if not self.momentum or not _fusable(self, trainable_variables):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        rate, momentum = tf.cast(learning_rate, tf.float32), tf.constant(self.momentum, tf.float32)
        for gradient, variable in zip(grads, trainable_variables):
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=_handle(variable), accum=_handle(self.momentums[self._get_variable_index(variable)]), lr=rate,
                grad=tf.cast(gradient, tf.float32), momentum=momentum, use_nesterov=self.nesterov)
