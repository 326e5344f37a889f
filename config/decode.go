package config

import (
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/klog/v2"
	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"
)

// ConfigMapKey is the key of the kube-proxy ConfigMap holding the
// KubeProxyConfiguration, as written by kubeadm and mounted as a file by
// the kube-proxy DaemonSet.
const ConfigMapKey = "config.conf"

// kindKubeProxyConfiguration is the kind of the configuration document.
const kindKubeProxyConfiguration = "KubeProxyConfiguration"

var configGVK = kubeproxyconfigv1alpha1.SchemeGroupVersion.WithKind(kindKubeProxyConfiguration)

// FromConfigMap returns the KubeProxyConfiguration document stored in a
// kube-proxy ConfigMap (the config.conf key).
func FromConfigMap(cm *corev1.ConfigMap) ([]byte, error) {
	if cm == nil {
		return nil, errors.New("nil ConfigMap")
	}
	data, ok := cm.Data[ConfigMapKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s/%s has no %q key", cm.Namespace, cm.Name, ConfigMapKey)
	}
	return []byte(data), nil
}

// readConfigFile reads and decodes path. Problems are reported as
// *FileError.
func readConfigFile(path string, logger klog.Logger) (*kubeproxyconfigv1alpha1.KubeProxyConfiguration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	cfg, err := decodeConfig(data, logger.WithValues("file", path))
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return cfg, nil
}

// decodeConfig decodes a YAML or JSON KubeProxyConfiguration strictly. When
// strict decoding fails only because of unknown or duplicate fields, the
// leniently decoded result is used and a warning is logged, as kube-proxy
// does.
func decodeConfig(data []byte, logger klog.Logger) (*kubeproxyconfigv1alpha1.KubeProxyConfiguration, error) {
	if err := checkTypeMeta(data); err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := kubeproxyconfigv1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering the v1alpha1 types: %w", err)
	}
	serializer := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	into := &kubeproxyconfigv1alpha1.KubeProxyConfiguration{}
	obj, _, err := serializer.Decode(data, nil, into)
	if err != nil {
		if !runtime.IsStrictDecodingError(err) || obj == nil {
			return nil, fmt.Errorf("decoding: %w", err)
		}
		logger.Info("Warning: strict decoding of the config file failed, using lenient decoding", "err", err.Error())
	}
	cfg, ok := obj.(*kubeproxyconfigv1alpha1.KubeProxyConfiguration)
	if !ok {
		return nil, fmt.Errorf("decoded unexpected type %T", obj)
	}
	return cfg, nil
}

// checkTypeMeta makes sure the document is a v1alpha1
// KubeProxyConfiguration, with a helpful message for a ConfigMap.
func checkTypeMeta(data []byte) error {
	jsonData, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("parsing YAML: %w", err)
	}
	gvk, err := kjson.DefaultMetaFactory.Interpret(jsonData)
	if err != nil {
		return fmt.Errorf("reading apiVersion and kind: %w", err)
	}
	if *gvk == configGVK {
		return nil
	}
	if gvk.Kind == "ConfigMap" {
		return fmt.Errorf("the file is a ConfigMap; --config takes the KubeProxyConfiguration stored under its %q key (the kube-proxy DaemonSet mounts that key as a file)", ConfigMapKey)
	}
	if gvk.Kind == "" || gvk.Version == "" {
		return fmt.Errorf("apiVersion and kind must be set to %q and %q", configGVK.GroupVersion().String(), configGVK.Kind)
	}
	return fmt.Errorf("unsupported apiVersion %q and kind %q: want %q and %q",
		gvk.GroupVersion().String(), gvk.Kind, configGVK.GroupVersion().String(), configGVK.Kind)
}
